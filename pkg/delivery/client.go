package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Limits of what a server may send us in one reply: a hostile or broken
// server must not make us buffer without bound.
const (
	maxReplyLine  = 4096
	maxReplyLines = 64
)

// errProtocol marks a reply that is not SMTP.
var errProtocol = errors.New("delivery: malformed reply")

// client is the client side of one SMTP session. It is small on purpose:
// go-smtp's client sends one command and waits for its reply, and
// PIPELINING (RFC 2920) needs several commands written before the first
// reply is read, so the engine speaks SMTP itself. Commands are written to
// a buffer and sent by flush; replies are read in order.
type client struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	// ext are the EHLO keywords (upper case) and their parameters.
	ext map[string]string
	tls bool

	cmdTimeout, dataTimeout time.Duration
}

func newClient(conn net.Conn, cmdTimeout, dataTimeout time.Duration) *client {
	c := &client{cmdTimeout: cmdTimeout, dataTimeout: dataTimeout}
	c.setConn(conn)
	return c
}

// setConn switches the session to conn (after a TLS handshake): buffered
// input from before is dropped, so nothing sent in plaintext is read as if
// protected (the STARTTLS command injection of CVE-2011-0411).
func (c *client) setConn(conn net.Conn) {
	c.conn = conn
	c.r = bufio.NewReaderSize(conn, 4096)
	c.w = bufio.NewWriterSize(conn, 8192)
}

// has reports whether the server announced the EHLO keyword ext.
func (c *client) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// send buffers one command line.
func (c *client) send(format string, args ...any) {
	fmt.Fprintf(c.w, format, args...)
	c.w.WriteString("\r\n")
}

// flush sends the buffered commands.
func (c *client) flush() error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.cmdTimeout))
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// cmd sends one command and reads its reply.
func (c *client) cmd(format string, args ...any) (Reply, error) {
	c.send(format, args...)
	if err := c.flush(); err != nil {
		return Reply{}, err
	}
	return c.reply(c.cmdTimeout)
}

// reply reads one reply, single or multi-line (RFC 5321 4.2.1). Text keeps
// every line, joined with "\n", each without its code and enhanced status.
func (c *client) reply(timeout time.Duration) (Reply, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	var (
		r     Reply
		lines []string
	)
	for i := 0; ; i++ {
		line, err := c.readLine()
		if err != nil {
			return Reply{}, err
		}
		if len(line) < 3 || i == maxReplyLines {
			return Reply{}, fmt.Errorf("%w: %q", errProtocol, line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || (i > 0 && code != r.Code) {
			return Reply{}, fmt.Errorf("%w: %q", errProtocol, line)
		}
		r.Code = code
		more := len(line) > 3 && line[3] == '-'
		if len(line) > 3 && line[3] != '-' && line[3] != ' ' {
			return Reply{}, fmt.Errorf("%w: %q", errProtocol, line)
		}
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		// RFC 2034 3: each line repeats the enhanced status.
		if enh, rest := splitEnhanced(text); enh != "" && (i == 0 || enh == r.Enhanced) {
			r.Enhanced, text = enh, rest
		}
		lines = append(lines, text)
		if !more {
			break
		}
	}
	r.Text = strings.Join(lines, "\n")
	return r, nil
}

func (c *client) readLine() (string, error) {
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxReplyLine {
		return "", fmt.Errorf("%w: line longer than %d bytes", errProtocol, maxReplyLine)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("read reply: %w", err)
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// greeting reads the server's 220 (RFC 5321 4.3.1).
func (c *client) greeting() (Reply, error) {
	r, err := c.reply(c.cmdTimeout)
	if err != nil {
		return r, err
	}
	if r.Code != 220 {
		return r, &ReplyError{Reply: r}
	}
	return r, nil
}

// hello greets with EHLO, falling back to HELO when the server does not
// know EHLO (RFC 5321 4.1.1.1, 3.2), and records the extensions.
func (c *client) hello(name string) error {
	r, err := c.cmd("EHLO %s", name)
	if err != nil {
		return err
	}
	if r.Code == 250 {
		c.ext = map[string]string{}
		for i, l := range strings.Split(r.Text, "\n") {
			if i == 0 {
				continue // the server's name and greeting
			}
			k, v, _ := strings.Cut(l, " ")
			c.ext[strings.ToUpper(k)] = v
		}
		return nil
	}
	if r.Code != 500 && r.Code != 502 {
		return &ReplyError{Reply: r}
	}
	r, err = c.cmd("HELO %s", name)
	if err != nil {
		return err
	}
	if r.Code != 250 {
		return &ReplyError{Reply: r}
	}
	c.ext = map[string]string{}
	return nil
}

// writeData sends the message body, dot-stuffed with CRLF line ends
// (RFC 5321 4.5.2), and the terminating ".".
func (c *client) writeData(body []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(c.dataTimeout))
	dw := textproto.NewWriter(c.w).DotWriter()
	if _, err := io.Copy(dw, bytes.NewReader(body)); err != nil {
		return fmt.Errorf("send body: %w", err)
	}
	if err := dw.Close(); err != nil {
		return fmt.Errorf("send body: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send body: %w", err)
	}
	return nil
}

// quit ends the session politely; the reply does not matter, so it is
// not waited for long.
func (c *client) quit() {
	c.send("QUIT")
	if c.flush() == nil {
		_, _ = c.reply(min(c.cmdTimeout, quitTimeout))
	}
	_ = c.conn.Close()
}

// ReplyError is a server reply that is not what the command needed.
type ReplyError struct{ Reply }

func (e *ReplyError) Error() string {
	if e.Enhanced == "" {
		return fmt.Sprintf("%d %s", e.Code, e.Text)
	}
	return fmt.Sprintf("%d %s %s", e.Code, e.Enhanced, e.Text)
}
