package mailparse

import (
	"archive/zip"
	"bytes"
	"io"
	"net/http"
	"path"
	"strings"
)

// Attachment describes a non-text part.
type Attachment struct {
	Name         string // file name as declared, decoded
	DeclaredType string // media type from Content-Type, lowercased
	SniffedType  string // media type guessed from the content (net/http.DetectContentType)
	Size         int64  // decoded size in bytes
	// Executable: a program or script, by file extension or by content
	// (PE "MZ", ELF).
	Executable bool
	// Macro: an Office document that carries a VBA project, or a
	// macro-enabled Office file type.
	Macro bool
	// Archive: a zip, rar, 7z, gzip, tar or similar container.
	Archive bool
	// ArchiveExecutable: the archive lists an executable or macro
	// document (zip only, one level deep).
	ArchiveExecutable bool
	// Entries lists the names in a zip archive, up to
	// Limits.MaxArchiveEntries; nil when the archive was not listed.
	Entries []string
	// TypeMismatch: the declared type and the content disagree in a way that
	// hides a program or archive (e.g. declared image/gif, content is a zip).
	TypeMismatch bool
}

// executableExt lists file extensions that Windows or a mail client runs.
func executableExt(ext string) bool {
	switch ext {
	case ".exe", ".scr", ".pif", ".com", ".bat", ".cmd", ".vbs", ".vbe", ".js", ".jse", ".wsf", ".wsh",
		".hta", ".msi", ".msp", ".jar", ".lnk", ".ps1", ".psm1", ".cpl", ".dll", ".reg", ".sys", ".iso",
		".img", ".vhd", ".apk", ".app", ".sh", ".elf", ".chm", ".ade", ".adp", ".application", ".gadget",
		".inf", ".ins", ".isp", ".mst", ".ocx", ".sct", ".shb", ".shs", ".url", ".xll", ".xbap":
		return true
	}
	return false
}

func macroExt(ext string) bool {
	switch ext {
	case ".docm", ".dotm", ".xlsm", ".xltm", ".xlam", ".pptm", ".potm", ".ppam", ".ppsm", ".sldm", ".xlsb":
		return true
	}
	return false
}

func archiveExt(ext string) bool {
	switch ext {
	case ".zip", ".rar", ".7z", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".cab", ".arj", ".lzh", ".ace", ".zipx":
		return true
	}
	return false
}

// File signatures.
const (
	magicZip = "PK\x03\x04"
	magicOLE = "\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
	// vbaOLE is "_VBA_PROJECT" in UTF-16LE, a stream name in an OLE document
	// that holds macros.
	vbaOLE = "_\x00V\x00B\x00A\x00_\x00P\x00R\x00O\x00J\x00E\x00C\x00T\x00"
)

// attachment reads a non-text part and describes it.
func (p *parser) attachment(h fieldGetter, mt, name string, body io.Reader) {
	m := p.m
	r := decodeTransfer(h.Get("Content-Transfer-Encoding"), body, m)
	head := make([]byte, 512)
	n, _ := io.ReadFull(r, head)
	head = head[:n]
	a := Attachment{Name: capString(name, 256), DeclaredType: mt}
	a.SniffedType, _, _ = strings.Cut(http.DetectContentType(head), ";")
	buf := head
	keep := bytes.HasPrefix(head, []byte(magicZip)) || bytes.HasPrefix(head, []byte(magicOLE))
	if keep {
		// Keep up to the archive cap so the zip directory (at the end) or the
		// OLE stream names can be read.
		rest, _ := io.ReadAll(io.LimitReader(r, int64(p.lim.MaxArchiveBytes-len(head))))
		buf = append(head, rest...)
	}
	extra, _ := io.Copy(io.Discard, r)
	a.Size = int64(len(buf)) + extra
	complete := extra == 0

	ext := strings.ToLower(path.Ext(strings.TrimSpace(name)))
	a.Executable = executableExt(ext) || bytes.HasPrefix(head, []byte("MZ")) || bytes.HasPrefix(head, []byte("\x7fELF"))
	a.Macro = macroExt(ext)
	a.Archive = archiveExt(ext) || bytes.HasPrefix(head, []byte(magicZip)) || a.SniffedType == "application/x-rar-compressed" ||
		a.SniffedType == "application/x-gzip" || bytes.HasPrefix(head, []byte("7z\xbc\xaf\x27\x1c"))
	if bytes.HasPrefix(head, []byte(magicOLE)) && bytes.Contains(buf, []byte(vbaOLE)) {
		a.Macro = true
	}
	if bytes.HasPrefix(head, []byte(magicZip)) && complete {
		p.listZip(&a, buf)
	}
	if a.Archive && !strings.HasPrefix(mt, "application/") && !strings.HasPrefix(mt, "multipart/") {
		a.TypeMismatch = true
	}
	if a.Executable && (strings.HasPrefix(mt, "image/") || strings.HasPrefix(mt, "text/")) {
		a.TypeMismatch = true
	}
	if len(m.Attachments) < p.lim.MaxAttachments {
		m.Attachments = append(m.Attachments, a)
	}
}

// listZip lists a zip archive one level deep. An OOXML document (a zip with
// word/, xl/ or ppt/ inside) is not counted as an archive; its VBA project
// marks it as a macro document.
func (p *parser) listZip(a *Attachment, buf []byte) {
	zr, err := zip.NewReader(bytes.NewReader(buf), int64(len(buf)))
	if err != nil {
		return
	}
	ooxml := false
	for i, f := range zr.File {
		if i >= p.lim.MaxArchiveEntries {
			break
		}
		name := capString(f.Name, 256)
		a.Entries = append(a.Entries, name)
		lower := strings.ToLower(name)
		if lower == "[content_types].xml" {
			ooxml = true
		}
		if strings.HasSuffix(lower, "vbaproject.bin") {
			a.Macro = true
		}
		ext := path.Ext(lower)
		if executableExt(ext) || macroExt(ext) {
			a.ArchiveExecutable = true
		}
	}
	if ooxml {
		a.Archive = false
		a.ArchiveExecutable = false
	}
}
