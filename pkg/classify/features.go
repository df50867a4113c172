package classify

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/outflowmail/outflow/pkg/mailparse"
	"golang.org/x/net/publicsuffix"
)

// family groups hashed features so a verdict can say which kind of evidence
// moved the score.
type family uint8

const (
	familySubject family = iota
	familyBody
	familyHeader
	familyURL
	familyMeta
	numFamilies
)

var familySymbol = [numFamilies]string{
	familySubject: "TOKENS_SUBJECT",
	familyBody:    "TOKENS_BODY",
	familyHeader:  "TOKENS_HEADER",
	familyURL:     "TOKENS_URL",
	familyMeta:    "TOKENS_STRUCTURE",
}

// famShift places the family above the hashed index in a feature id.
const famShift = 28

// features is what the model scores for one message.
type features struct {
	fingerprint string
	// ids are hashed token features, family<<famShift | index, sorted
	// and unique.
	ids   []uint32
	rules [numRules]bool
}

// extractor builds features; one per Classify call.
type extractor struct {
	mask uint64
	ids  []uint32
	buf  []byte
	fam  family
	// set holds the hash buckets added so far (bucket+1, 0 for a free
	// slot; open addressing, linear probing), so each bucket is added once
	// (the first family to hit it keeps it) without sorting. It is sized
	// to the message, at most half full: a few thousand slots that stay in
	// the first-level cache, where a bitset over all 2^20 buckets (128 KiB)
	// missed it on nearly every word.
	set     []uint32
	setMask uint32
	// phishAnchor: a word that every phishing phrase contains was seen, so
	// the phrase search is worth running.
	phishAnchor bool
	// domains caches regDomain per host: links repeat hosts.
	domains map[string]string
	// Scratch kept from message to message: the link hosts seen, the
	// fingerprint state, lowercased text for the phrase search, and the
	// Bayes probabilities.
	hosts map[string]bool
	// lowerNames caches lowercased header field names (see lowerName).
	lowerNames map[string]string
	sh         simhasher
	lower      []byte
	probs      []float64
	// parser parses the message into buffers kept with the extractor's.
	parser mailparse.Parser
}

// regDomain is the cached registered domain of host.
func (x *extractor) regDomain(host string) string {
	if d, ok := x.domains[host]; ok {
		return d
	}
	d := regDomain(host)
	x.domains[host] = d
	return d
}

func (x *extractor) addHash(h uint64) {
	i := uint32(mix64(h) & x.mask)
	for s := i & x.setMask; ; s = (s + 1) & x.setMask {
		switch x.set[s] {
		case 0:
			x.set[s] = i + 1
			x.ids = append(x.ids, uint32(x.fam)<<famShift|i)
			if 2*len(x.ids) > len(x.set) {
				x.resetSet(2 * len(x.set))
			}
			return
		case i + 1:
			return
		}
	}
}

// resetSet empties the bucket set, sizes it to n slots (a power of two),
// and enters the buckets of x.ids.
func (x *extractor) resetSet(n int) {
	if cap(x.set) < n {
		x.set = make([]uint32, n)
	} else {
		x.set = x.set[:n]
		clear(x.set)
	}
	x.setMask = uint32(n - 1)
	for _, id := range x.ids {
		i := id & (1<<famShift - 1)
		s := i & x.setMask
		for x.set[s] != 0 {
			s = (s + 1) & x.setMask
		}
		x.set[s] = i + 1
	}
}

func (x *extractor) add(prefix string, tok []byte) uint64 {
	return x.addH(hashString(fnvOffset, prefix), tok)
}

// addH adds tok under a prefix already hashed into ph.
func (x *extractor) addH(ph uint64, tok []byte) uint64 {
	h := hashBytes(ph, tok)
	x.addHash(h)
	return h
}

func (x *extractor) addS(prefix, tok string) {
	x.addHash(hashString(hashString(fnvOffset, prefix), tok))
}

// ignoredHeader lists fields that a tenant's submission never carries: trace
// fields added in transit, and fields the SpamAssassin corpus's mail store
// and filters added (X-Spam-*, X-Razor*, Delivery-Date, X-Keywords...).
// Learning them would learn the corpus, not the mail.
func ignoredHeader(n string) bool { // n lowercased
	switch n {
	case "received", "delivered-to", "return-path", "delivery-date", "x-keywords", "x-status", "status",
		"x-uid", "x-original-to", "x-envelope-from", "x-envelope-to", "x-authentication-warning",
		"x-virus-scanned", "x-loop", "x-apparently-to", "x-originalarrivaltime", "content-length", "lines",
		"x-mime-autoconverted", "x-original-date", "x-mailscanner", "x-mailscanner-information",
		"x-mozilla-status", "x-mozilla-status2", "x-evolution", "x-imap", "x-pop3-rcpt", "x-antivirus",
		"x-antivirus-status", "x-mailscanner-from", "x-spam", "x-sieve", "x-filtered-by":
		return true
	}
	return strings.HasPrefix(n, "x-spam-") || strings.HasPrefix(n, "x-razor") || strings.HasPrefix(n, "x-mailscanner")
}

// corpusArtefact reports tokens produced by the SpamAssassin corpus's address
// rewrite (yyyy@..., zzzz@..., spamassassin.taint.org), which no real
// message has.
func corpusArtefact(tok []byte, compound bool) bool {
	if len(tok) >= 4 && (tok[0] == 'y' || tok[0] == 'z') {
		if s := string(tok[:4]); s == "yyyy" || s == "zzzz" {
			return true
		}
	}
	return compound && bytes.Contains(tok, []byte("taint.org"))
}

// regDomain is the registered domain (eTLD+1) of host, or host itself.
func regDomain(host string) string {
	if host == "" {
		return ""
	}
	if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return d
	}
	return host
}

// newExtractor returns an extractor for a model with mask, to be reused
// from message to message (see extractor.extract).
func newExtractor(mask uint64) *extractor {
	return &extractor{mask: mask, buf: make([]byte, 0, 64),
		domains: make(map[string]string, 8), hosts: make(map[string]bool, 8),
		lowerNames: make(map[string]string, 64)}
}

// extract computes the features of a parsed message with a fresh
// extractor, so the features own their ids, as training keeps them.
func extract(m *mailparse.Message, mask uint64) features {
	return newExtractor(mask).extract(m)
}

// extract computes the features of a parsed message. The features' ids
// share x's storage: they are valid until x extracts the next message.
func (x *extractor) extract(m *mailparse.Message) features {
	// About one feature per five bytes of text, more with bigrams.
	est := min((len(m.Text)+len(m.HTMLText))/3+256, 1<<16)
	if cap(x.ids) < est {
		x.ids = make([]uint32, 0, est)
	}
	x.ids = x.ids[:0]
	x.resetSet(max(1024, 2<<bits.Len(uint(est)))) // under half full at est features
	x.phishAnchor = false
	clear(x.domains)
	var f features
	s := &signals{x: x}

	x.fam = familySubject
	x.words(famSubject, m.Subject, nil)
	x.fam = familyBody
	// The fingerprint is taken over the plain text, or the HTML's text when
	// the plain part is missing or a stub.
	sh := &x.sh
	*sh = simhasher{}
	plainSH, htmlSH := sh, (*simhasher)(nil)
	if len(m.Text) < 64 && len(m.HTMLText) > len(m.Text) {
		plainSH, htmlSH = nil, sh
	}
	bodyWords := x.words(famBody, m.Text, plainSH)
	bodyWords += x.words(famBody, m.HTMLText, htmlSH)
	f.fingerprint = sh.sum()
	s.bodyWords = bodyWords
	x.fam = familyHeader
	x.header(m)
	x.fam = familyURL
	x.urls(m)
	x.fam = familyMeta
	x.meta(m, bodyWords)

	s.phishAnchor = x.phishAnchor
	s.rules(m, &f.rules)

	f.ids = x.ids
	return f
}

// words adds the word features of text: unigrams, capitals, and (for the
// body) bigrams; with sh, every word is also fed to the fingerprint. It
// returns the number of words.
func (x *extractor) words(prefix, text string, sh *simhasher) int {
	bigrams := prefix == famBody || prefix == famSubject
	ph := hashString(fnvOffset, prefix)
	phAt := hashString(fnvOffset, prefix+"@")
	phCaps := hashString(fnvOffset, famCaps+prefix)
	n := 0
	var prev uint64
	havePrev := false
	sc := wordScanner{text: text, buf: x.buf}
	for sc.next() {
		tok, caps, compound := sc.tok, sc.caps, sc.compound
		if sh != nil {
			sh.word(tok)
		}
		switch string(tok) {
		case "account", "password", "identity", "billing", "payment", "activity", "access", "re-enter", "verify":
			x.phishAnchor = true
		}
		if corpusArtefact(tok, compound) {
			havePrev = false
			continue
		}
		n++
		switch {
		case compound:
			if at := indexByte(tok, '@'); at >= 0 {
				x.addH(phAt, tok[at+1:])
				havePrev = false
				continue
			}
		case len(tok) > maxTokenLen:
			x.addS(prefix, "#long"+lenBucket(len(tok)))
			havePrev = false
			continue
		case len(tok) < 2 && !(len(tok) == 1 && tok[0] == '$'):
			havePrev = false
			continue
		case len(tok) >= 5 && allDigits(tok):
			x.addS(prefix, "#digits"+lenBucket(len(tok)))
			havePrev = false
			continue
		}
		h := x.addH(ph, tok)
		if caps && len(tok) >= 3 {
			x.addH(phCaps, tok)
		}
		if bigrams {
			if havePrev {
				x.addHash(mix64(prev*31+h) ^ 0x2b)
			}
			prev, havePrev = h, true
		}
	}
	x.buf = sc.buf
	return n
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// lenBucket names a power-of-two bucket of n.
func lenBucket(n int) string {
	switch {
	case n <= 0:
		return "0"
	case n == 1:
		return "1"
	case n <= 3:
		return "2-3"
	case n <= 7:
		return "4-7"
	case n <= 15:
		return "8-15"
	case n <= 31:
		return "16-31"
	case n <= 63:
		return "32-63"
	case n <= 127:
		return "64-127"
	case n <= 255:
		return "128-255"
	case n <= 1023:
		return "256-1k"
	case n <= 4095:
		return "1k-4k"
	case n <= 16383:
		return "4k-16k"
	}
	return "16k+"
}

// header adds features of the top-level header: which fields exist, the
// sender's domain and name, the mailer, the Message-ID and Date shapes.
func (x *extractor) header(m *mailparse.Message) {
	prev := "^"
	for _, fl := range m.Header {
		name := x.lowerName(fl.Name)
		if ignoredHeader(name) {
			continue
		}
		// Header order: mailers and spamware write fields in their own
		// order, so consecutive pairs of names are features.
		x.addHash(hashString(hashString(hashString(fnvOffset, famHeader+"order:"), prev), ">"+name))
		prev = name
		// A repeated name hashes to a bucket already set, so it adds
		// nothing.
		x.addS(famHeader+"name:", name)
		switch name {
		case "x-mailer", "user-agent", "x-newsreader", "x-mimeole":
			x.valueWords(famHeader+"mailer:", fl.Value, 4)
			x.addShape(famHeader+"mailershape:", fl.Value, 24)
		case "content-type":
			mt, params, _ := strings.Cut(fl.Value, ";")
			x.addS(famHeader+"ct:", strings.ToLower(strings.TrimSpace(mt)))
			// The boundary's shape names the mailer that wrote it.
			// Byte-wise: an index into a lower-cased copy is not one into
			// params when lower-casing changes lengths (invalid UTF-8
			// becomes U+FFFD), which a fuzzed header showed.
			if i := mailparse.IndexFoldASCII(params, "boundary="); i >= 0 {
				b := strings.Trim(params[i+9:], "\" ")
				if j := strings.IndexAny(b, "\";"); j >= 0 {
					b = b[:j]
				}
				x.addShape(famHeader+"boundaryshape:", b, 32)
			}
		case "content-transfer-encoding", "precedence", "x-priority", "importance", "x-msmail-priority",
			"mime-version":
			x.addS(famHeader+name+":", strings.ToLower(strings.TrimSpace(capStr(fl.Value, 32))))
		case "organization", "list-id":
			x.valueWords(famHeader+name+":", fl.Value, 6)
		case "message-id":
			x.addShape(famHeader+"midshape:", fl.Value, 48)
			if _, dom, ok := strings.Cut(strings.Trim(fl.Value, " <>"), "@"); ok && m.From.Domain != "" &&
				regDomain(strings.ToLower(dom)) == regDomain(m.From.Domain) {
				x.addS(famHeader, "mid-from-domain")
			}
		case "date":
			x.addShape(famHeader+"dateshape:", fl.Value, 40)
		}
	}
	if m.HasFrom {
		d := m.From.Domain
		if !strings.Contains(d, "taint.org") && d != "" {
			x.addS(famHeader+"fromdom:", regDomain(d))
			if i := strings.LastIndexByte(d, '.'); i >= 0 {
				x.addS(famHeader+"fromtld:", d[i+1:])
			}
		}
		x.valueWords(famHeader+"fromname:", m.From.Name, 6)
		local, _, _ := strings.Cut(m.From.Addr, "@")
		x.addShape(famHeader+"fromlocalshape:", local, 12)
	}
	if m.HasReplyTo && m.ReplyTo.Domain != "" && !strings.Contains(m.ReplyTo.Domain, "taint.org") {
		x.addS(famHeader+"replytodom:", regDomain(m.ReplyTo.Domain))
	}
	x.addS(famHeader+"nrcpt:", lenBucket(len(m.To)))
}

// lowerName is strings.ToLower of a header field name, from a cache: the
// same few dozen names come in every message. The cache stops growing at
// maxLowerNames, so random names cannot swell it.
func (x *extractor) lowerName(name string) string {
	if l, ok := x.lowerNames[name]; ok {
		return l
	}
	l := strings.ToLower(name)
	if len(x.lowerNames) < maxLowerNames {
		// A copy: the name points into the message's header block, which
		// the cache would otherwise keep alive.
		l = strings.Clone(l)
		x.lowerNames[strings.Clone(name)] = l
	}
	return l
}

const maxLowerNames = 512

// valueWords adds up to max words of a header value.
func (x *extractor) valueWords(prefix, v string, max int) {
	n := 0
	x.buf = scanWords(v, x.buf, func(tok []byte, _, compound bool) {
		if n >= max || corpusArtefact(tok, compound) || len(tok) > maxTokenLen {
			return
		}
		n++
		x.add(prefix, tok)
	})
}

// appendShape appends to dst the shape of s: its character classes (A
// letter, 9 digit, other bytes kept), runs collapsed, at most max bytes, so
// "<3F2A.1B@host.example>" becomes "<9A.9A@A.A>": mailers and spamware
// leave recognisable shapes.
func appendShape(dst []byte, s string, max int) []byte {
	var last byte
	n := len(dst)
	for i := 0; i < len(s) && len(dst)-n < max; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			c = 'A'
		case c >= '0' && c <= '9':
			c = '9'
		case c >= utf8.RuneSelf:
			c = 'U'
		}
		if c == last && (c == 'A' || c == '9' || c == 'U' || c == ' ') {
			continue
		}
		last = c
		dst = append(dst, c)
	}
	return dst
}

// addShape adds the shape of s under prefix, hashed from x's buffer.
func (x *extractor) addShape(prefix, s string, max int) {
	x.buf = appendShape(x.buf[:0], s, max)
	x.add(prefix, x.buf)
}

func capStr(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// urls adds the hosts, registered domains and TLDs of links, once each.
func (x *extractor) urls(m *mailparse.Message) {
	seen := x.hosts
	clear(seen)
	for _, l := range m.Links {
		if strings.Contains(l.Host, "taint.org") {
			continue
		}
		if !seen[l.Host] {
			seen[l.Host] = true
			x.addS(famURL+"host:", l.Host)
			rd := x.regDomain(l.Host)
			x.addS(famURL+"dom:", rd)
			if i := strings.LastIndexByte(l.Host, '.'); i >= 0 && !l.IP {
				x.addS(famURL+"tld:", l.Host[i+1:])
			}
		}
		// Path words tell tracking and script endpoints apart.
		if i := strings.Index(l.URL, "://"); i >= 0 {
			rest := l.URL[i+3:]
			if j := strings.IndexAny(rest, "/?"); j >= 0 {
				x.valueWords(famURL+"path:", rest[j:], 4)
			}
		}
		if strings.Contains(l.URL, "@") && strings.Contains(l.URL, "?") {
			x.addS(famURL, "address-in-query")
		}
	}
	x.addS(famURL+"nlinks:", lenBucket(len(m.Links)))
	x.addS(famURL+"nhosts:", lenBucket(len(seen)))
}

// meta adds structural features: MIME shape, sizes, attachments, defects.
func (x *extractor) meta(m *mailparse.Message, bodyWords int) {
	x.addS(famMeta+"words:", lenBucket(bodyWords))
	x.addS(famMeta+"parts:", lenBucket(m.Parts))
	x.addS(famMeta+"images:", lenBucket(m.Images))
	shapeTok := "t"
	if m.HTMLParts > 0 {
		shapeTok += "h"
	}
	if m.TextParts > 0 {
		shapeTok += "p"
	}
	if m.Alternative {
		shapeTok += "alt"
	}
	if len(m.Attachments) > 0 {
		shapeTok += "att"
	}
	x.addS(famMeta+"shape:", shapeTok)
	for _, cs := range m.TextCharsets {
		x.addS(famMeta+"charset:", cs)
	}
	for _, a := range m.Attachments {
		x.addS(famMeta+"atype:", a.DeclaredType)
		x.addS(famMeta+"asniff:", a.SniffedType)
		if i := strings.LastIndexByte(a.Name, '.'); i >= 0 {
			x.addS(famMeta+"aext:", strings.ToLower(capStr(a.Name[i:], 8)))
		}
	}
	for _, d := range m.Defects {
		x.addS(famMeta+"defect:", string(d))
	}

	if m.HiddenText > 0 {
		x.addS(famMeta+"hidden:", lenBucket(m.HiddenText))
	}
}

// signals are message measurements shared by several rules.
type signals struct {
	x           *extractor // for its domain cache
	bodyWords   int
	phishAnchor bool
}

// rules evaluates the named rules.
func (s *signals) rules(m *mailparse.Message, r *[numRules]bool) {
	fromDom := regDomain(m.From.Domain)

	// Sender.
	r[ruleFromMissing] = !m.HasFrom || m.From.Domain == ""
	if m.HasFrom {
		name := m.From.Name
		r[ruleFromNoName] = strings.TrimSpace(name) == ""
		r[ruleFromNameHasAddress] = strings.Contains(name, "@")
		for _, d := range domainsIn(name) {
			if regDomain(d) != fromDom {
				r[ruleFromNameOtherDomain] = true
				break
			}
		}
		local, _, _ := strings.Cut(m.From.Addr, "@")
		digits := 0
		for _, c := range local {
			if c >= '0' && c <= '9' {
				digits++
			}
		}
		r[ruleFromLocalDigits] = digits >= 3
	}
	if m.HasReplyTo && m.ReplyTo.Domain != "" && fromDom != "" && regDomain(m.ReplyTo.Domain) != fromDom {
		r[ruleReplyToOtherDomain] = true
	}
	mid := strings.TrimSpace(m.Get("Message-Id"))
	r[ruleMissingMessageID] = mid == ""
	r[ruleMessageIDOdd] = mid != "" && !(strings.HasPrefix(mid, "<") && strings.HasSuffix(mid, ">") && strings.Contains(mid, "@"))
	date := strings.TrimSpace(m.Get("Date"))
	r[ruleMissingDate] = date == ""
	r[ruleBadDate] = date != "" && !validDate(date)
	r[ruleMissingTo] = !m.Has("To") && !m.Has("Cc")
	to := strings.ToLower(m.Get("To"))
	r[ruleToUndisclosed] = m.Has("To") && (strings.TrimSpace(to) == "" || strings.Contains(to, "undisclosed") || strings.Contains(to, "recipient list not shown"))
	prio := strings.TrimSpace(m.Get("X-Priority"))
	r[rulePriorityHigh] = strings.HasPrefix(prio, "1") || strings.HasPrefix(prio, "2") || strings.EqualFold(strings.TrimSpace(m.Get("Importance")), "high")

	// Subject.
	subj := m.Subject
	raw := m.Get("Subject")
	r[ruleSubjectEmpty] = strings.TrimSpace(subj) == ""
	ls := strings.ToLower(strings.TrimSpace(subj))
	r[ruleSubjectReply] = strings.HasPrefix(ls, "re:") || strings.HasPrefix(ls, "fwd:") || strings.HasPrefix(ls, "fw:")
	r[ruleSubjectExclaim] = strings.Contains(subj, "!")
	r[ruleSubjectMoney] = strings.ContainsAny(subj, "$%€£")
	r[ruleSubjectShouting] = shouting(stripListTag(subj), 8, 0.6)
	if strings.Contains(raw, "=?") {
		r[ruleSubjectEncodedASCII] = mailparse.IsASCII(subj)
		r[ruleSubjectEncodedMixed] = encodedMixed(raw)
	}
	r[ruleSubjectTrailingID] = trailingID(subj)

	// Body and HTML.
	r[ruleHTMLOnly] = m.HTMLParts > 0 && m.TextParts == 0
	visible := len(strings.TrimSpace(m.HTMLText))
	r[ruleHTMLLittleText] = r[ruleHTMLOnly] && visible < 200
	r[ruleImageOnly] = m.Images > 0 && s.bodyWords < 20
	r[ruleInvisibleText] = m.HiddenText >= 20
	r[ruleInvisibleTextMany] = m.HiddenText >= 200
	r[ruleHTMLForm] = m.Forms > 0
	r[ruleBase64Text] = m.Base64Text
	r[ruleNoText] = s.bodyWords == 0
	body := m.Text
	if body == "" {
		body = m.HTMLText
	}
	r[ruleBodyShouting] = shouting(body[:min(len(body), 8<<10)], 100, 0.3)
	r[ruleBodyExclaimMany] = strings.Count(body, "!") >= 10
	for _, d := range m.Defects {
		switch d {
		case mailparse.DefectBadBase64, mailparse.DefectBadQP, mailparse.DefectUnknownCharset,
			mailparse.DefectMultipartSyntax, mailparse.DefectNoBoundary, mailparse.DefectBadContentType,
			mailparse.DefectHeaderSyntax, mailparse.DefectUnknownEncoding:
			r[ruleMIMEDefect] = true
		}
	}

	// Links.
	perHost := make(map[string]int, 8)
	for _, l := range m.Links {
		perHost[l.Host]++
		if l.IP && l.Source != mailparse.LinkRedirect {
			r[ruleURLIPHost] = true
		}
		if shortener(l.Host) {
			r[ruleURLShortener] = true
		}
		if l.Redirector {
			r[ruleURLRedirector] = true
		}
		if l.Obfuscated {
			r[ruleURLObfuscated] = true
		}
		if l.UserInfo {
			r[ruleURLUserInfo] = true
		}
		host := s.x.regDomain(l.Host)
		if fromDom != "" && host == fromDom {
			r[ruleURLFromDomain] = true
		}
		if l.Source == mailparse.LinkHref && l.Text != "" {
			for _, d := range domainsIn(l.Text) {
				if s.x.regDomain(d) != host {
					r[ruleLinkTextMismatch] = true
				}
				break
			}
		}
	}
	for _, n := range perHost {
		if n >= 10 {
			r[ruleURLManyOneHost] = true
		}
	}

	// Attachments.
	for _, a := range m.Attachments {
		r[ruleAttachExecutable] = r[ruleAttachExecutable] || a.Executable
		r[ruleAttachArchiveExecutable] = r[ruleAttachArchiveExecutable] || a.ArchiveExecutable
		r[ruleAttachMacro] = r[ruleAttachMacro] || a.Macro
		r[ruleAttachArchive] = r[ruleAttachArchive] || a.Archive
		r[ruleAttachTypeMismatch] = r[ruleAttachTypeMismatch] || a.TypeMismatch
	}

	// Credential phishing.
	// A request to act on an account needs somewhere to act: a link or form.
	r[rulePhishPhrase] = s.phishAnchor && (len(m.Links) > 0 || m.Forms > 0) && (s.x.phishPhrase(m.Subject) || s.x.phishPhrase(body))
	deceptive := r[ruleLinkTextMismatch] || r[ruleURLIPHost] || r[ruleURLUserInfo] || r[ruleURLObfuscated] || m.Forms > 0
	r[rulePhishCredentials] = m.PasswordFields > 0 || (r[rulePhishPhrase] && deceptive)
}

// domainsIn returns the host names written in s (words with a dot and a
// letter top-level domain), lowercased.
func domainsIn(s string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(`"'<>()[],;!?`, r)
	}) {
		w = strings.ToLower(w)
		if i := strings.Index(w, "://"); i >= 0 {
			w = w[i+3:]
		}
		if i := strings.LastIndexByte(w, '@'); i >= 0 {
			w = w[i+1:]
		}
		if i := strings.IndexAny(w, "/?#:"); i >= 0 {
			w = w[:i]
		}
		w = strings.Trim(w, ".")
		dot := strings.LastIndexByte(w, '.')
		if dot <= 0 || len(w)-dot-1 < 2 {
			continue
		}
		tld := w[dot+1:]
		ok := true
		for _, c := range tld {
			if c < 'a' || c > 'z' {
				ok = false
			}
		}
		if ok && validHost(w) {
			out = append(out, w)
		}
	}
	return out
}

func validHost(h string) bool {
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// shouting reports whether at least minLetters letters are present and the
// share of capitals among them reaches ratio.
func shouting(s string, minLetters int, ratio float64) bool {
	upper, letters := 0, 0
	i := 0
	// Eight ASCII bytes at a time (the body check reads 8 KiB): with bit 5
	// set every letter is lowercase, and two additions per byte lane tell
	// whether it lies in 'a'..'z'; a capital is a letter whose bit 5 was
	// clear.
	const lanes, high = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))
		if w&high != 0 {
			break // non-ASCII ahead: count rune by rune from here
		}
		t := w | 0x20*lanes
		letter := (t + (0x80-'a')*lanes) &^ (t + (0x80-'z'-1)*lanes) & high
		letters += bits.OnesCount64(letter)
		upper += bits.OnesCount64(letter &^ (w << 2))
	}
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if (c|0x20)-'a' < 26 {
				letters++
				if c < 'a' {
					upper++
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if unicode.IsLetter(r) {
			letters++
			if unicode.IsUpper(r) {
				upper++
			}
		}
	}
	return letters >= minLetters && float64(upper) >= ratio*float64(letters)
}

// stripListTag removes a leading "[list]" tag and reply prefixes.
func stripListTag(s string) string {
	s = strings.TrimSpace(s)
	for {
		ls := strings.ToLower(s)
		switch {
		case strings.HasPrefix(s, "["):
			if i := strings.IndexByte(s, ']'); i >= 0 {
				s = strings.TrimSpace(s[i+1:])
				continue
			}
		case strings.HasPrefix(ls, "re:"), strings.HasPrefix(ls, "fw:"):
			s = strings.TrimSpace(s[3:])
			continue
		}
		return s
	}
}

// encodedMixed reports encoded words in more than one charset or encoding,
// or encoded words next to raw 8-bit bytes.
func encodedMixed(raw string) bool {
	var first string
	for rest := raw; ; {
		i := strings.Index(rest, "=?")
		if i < 0 {
			break
		}
		rest = rest[i+2:]
		j := strings.IndexByte(rest, '?')
		if j < 0 || j+2 > len(rest) {
			break
		}
		tag := strings.ToLower(rest[:j+2])
		if first == "" {
			first = tag
		} else if tag != first {
			return true
		}
		rest = rest[j+2:]
	}
	return !mailparse.IsASCII(raw)
}

// trailingID matches subjects ending in a run of spaces and a tag, or in a
// token mixing letters and digits that is not a version or date.
func trailingID(s string) bool {
	t := strings.TrimRight(s, " \t")
	if t == "" {
		return false
	}
	if strings.Contains(t, "     ") {
		return true
	}
	i := strings.LastIndexAny(t, " \t")
	if i < 0 {
		return false
	}
	last := t[i+1:]
	if len(last) < 5 || strings.ContainsAny(last, ".:/-_") {
		return false
	}
	letters, digits := 0, 0
	for _, c := range last {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			letters++
		default:
			return false
		}
	}
	return letters > 0 && digits > 0 || digits >= 5
}

func shortener(host string) bool {
	switch host {
	case "bit.ly", "tinyurl.com", "goo.gl", "t.co", "ow.ly", "is.gd", "buff.ly", "rebrand.ly", "cutt.ly",
		"tiny.cc", "shorturl.at", "rb.gy", "bit.do", "s.id", "lnkd.in", "v.gd", "t.ly", "x.co", "su.pr",
		"snipurl.com", "budurl.com", "tr.im", "tinyurl.de", "shorl.com", "makeashorterlink.com", "go2.me",
		"snurl.com", "url.ie", "qr.net", "1url.com", "tiny.pl", "cli.gs", "short.io", "bl.ink", "rebrandly.com":
		return true
	}
	return false
}

// phishPivots are the phishing phrases grouped by a word each contains:
// the text is searched for the four words, and a phrase is compared only
// where its word occurs, instead of searching the text for every phrase.
var phishPivots = [...]struct {
	word    string
	phrases []string
	// gated: the phrases need "your", "activity" or "access" elsewhere
	// in the text, as the first phrase matcher required of every phrase.
	gated bool
}{
	{word: "your", phrases: []string{
		"verify your account", "confirm your account", "update your account", "validate your account",
		"verify your identity", "confirm your identity", "confirm your password", "verify your password",
		"update your billing", "update your payment", "re-enter your", "login to your account",
		"log in to your account", "sign in to your account", "your password will expire", "reset your password",
		"verify your email",
	}},
	{word: "account", gated: true, phrases: []string{
		"account has been suspended", "account will be suspended", "account has been limited",
		"account will be closed",
	}},
	{word: "activity", phrases: []string{"unusual activity", "suspicious activity"}},
	{word: "access", phrases: []string{"unauthorized access"}},
}

// phishPhrase matches requests to act on an account or credentials.
func (x *extractor) phishPhrase(s string) bool {
	if s == "" {
		return false
	}
	if len(s) > 8<<10 {
		s = s[:8<<10] // a phishing request comes early
	}
	ls := x.toLower(s)
	gate := -1 // unknown
	for _, pv := range phishPivots {
		for off := 0; ; {
			i := strings.Index(ls[off:], pv.word)
			if i < 0 {
				break
			}
			i += off
			off = i + 1
			for _, p := range pv.phrases {
				start := i - strings.Index(p, pv.word)
				if start < 0 || !strings.HasPrefix(ls[start:], p) {
					continue
				}
				if !pv.gated {
					return true
				}
				if gate < 0 {
					gate = 0
					if strings.Contains(ls, "your") || strings.Contains(ls, "activity") || strings.Contains(ls, "access") {
						gate = 1
					}
				}
				if gate == 1 {
					return true
				}
			}
		}
	}
	return false
}

// toLower is strings.ToLower, into x's buffer when s is ASCII. The result
// is valid until the next call.
func (x *extractor) toLower(s string) string {
	if !mailparse.IsASCII(s) {
		return strings.ToLower(s)
	}
	b := x.lower[:0]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	x.lower = b
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// dateFastLayouts are the layouts of net/mail's list that nearly every Date
// field matches; a full RFC 5322 layout first, as most mailers write it.
var dateFastLayouts = [...]string{"Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700"}

// validDate reports whether mail.ParseDate accepts s. mail.ParseDate tries
// 48 layouts in turn and allocates an error for each miss, which made date
// checking a tenth of all allocations; the common shape (a numeric zone,
// nothing but blanks after it) is tried against its two likely layouts
// first, on the same zone-cut string mail.ParseDate would parse, so a
// success here is a success there. Anything else goes to mail.ParseDate.
func validDate(s string) bool {
	if strings.IndexByte(s, '\r') < 0 {
		d := strings.TrimLeft(s, " \t")
		if i := strings.IndexAny(d, "+-"); i >= 0 && len(d) >= i+5 {
			if !commentsClosed(d[i+5:]) {
				return false
			}
			for _, layout := range dateFastLayouts {
				if _, err := time.Parse(layout, d[:i+5]); err == nil {
					return true
				}
			}
		}
	}
	_, err := mail.ParseDate(s)
	return err == nil
}

// commentsClosed is net/mail's check of what follows a numeric zone: blanks
// and parenthesised comments (nested, with backslash escapes), of which
// each must be closed; whatever comes after them is not looked at.
func commentsClosed(s string) bool {
	for {
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, "(") {
			return true
		}
		s = s[1:]
		depth := 1
		for len(s) > 0 && depth > 0 {
			switch {
			case s[0] == '\\' && len(s) > 1:
				s = s[1:]
			case s[0] == '(':
				depth++
			case s[0] == ')':
				depth--
			}
			s = s[1:]
		}
		if depth != 0 {
			return false
		}
	}
}
