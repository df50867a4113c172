package delivery

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// connKey says which jobs may share an open connection: those sent from the
// same source address to the same MX address under the same TLS
// requirement (a session opened for a domain that accepts plaintext must
// not carry mail for one that requires verified TLS).
type connKey struct {
	src  netip.Addr
	addr netip.AddrPort
	tls  string
}

// connPool keeps the idle sessions between transactions, and, when there is
// no Shaper, counts open connections per (source, site).
type connPool struct {
	mu     sync.Mutex
	idle   map[connKey][]*session
	open   map[slotKey]int
	wake   chan struct{} // closed and replaced when a session or slot frees
	closed bool
}

type slotKey struct {
	src  netip.Addr
	site string
}

func (p *connPool) init() {
	p.idle = map[connKey][]*session{}
	p.open = map[slotKey]int{}
	p.wake = make(chan struct{})
}

// signal wakes the jobs waiting for a session or a slot. Lock held.
func (p *connPool) signal() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// waitCh returns the channel closed at the next signal.
func (p *connPool) waitCh() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wake
}

// get takes an idle session to addr from the first of srcs that has one.
func (p *connPool) get(addr netip.AddrPort, tlsKey string, srcs []source) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, src := range srcs {
		k := connKey{src: src.addr, addr: addr, tls: tlsKey}
		l := p.idle[k]
		if len(l) == 0 {
			continue
		}
		// The most recently used first: the others may reach their idle
		// timeout and close, which is what the timeout is for.
		s := l[len(l)-1]
		p.idle[k] = l[:len(l)-1]
		if len(p.idle[k]) == 0 {
			delete(p.idle, k)
		}
		s.timer.Stop()
		return s
	}
	return nil
}

// put returns a session after a transaction: it waits for the next one,
// or, at its message limit or after Close, says QUIT.
func (p *connPool) put(s *session) {
	p.mu.Lock()
	if p.closed || s.sent >= s.lim.MaxMessagesPerConn {
		p.mu.Unlock()
		s.end(p, true)
		return
	}
	p.idle[s.key] = append(p.idle[s.key], s)
	s.timer = time.AfterFunc(s.lim.IdleTimeout, func() { p.expire(s) })
	p.signal()
	p.mu.Unlock()
}

// expire closes a session idle for its IdleTimeout, unless it was taken
// in the meantime.
func (p *connPool) expire(s *session) {
	if p.remove(s) {
		s.end(p, true)
	}
}

func (p *connPool) remove(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.idle[s.key]
	i := slices.Index(l, s)
	if i < 0 {
		return false
	}
	p.idle[s.key] = slices.Delete(l, i, i+1)
	if len(p.idle[s.key]) == 0 {
		delete(p.idle, s.key)
	}
	return true
}

// closeIdleOf closes one idle session from src toward site but not to
// addr, to free its connection slot for a job bound for addr (an idle
// session to addr itself is taken, not closed).
func (p *connPool) closeIdleOf(src netip.Addr, site string, addr netip.AddrPort) bool {
	p.mu.Lock()
	var victim *session
	for k, l := range p.idle {
		if k.src != src || k.addr == addr {
			continue
		}
		if i := slices.IndexFunc(l, func(s *session) bool { return s.site == site }); i >= 0 {
			victim = l[i]
			break
		}
	}
	p.mu.Unlock()
	if victim == nil || !p.remove(victim) {
		return false
	}
	victim.timer.Stop()
	victim.end(p, true)
	return true
}

// closeIdleFor closes every idle session from src toward site and returns
// how many it closed.
func (p *connPool) closeIdleFor(src netip.Addr, site string) int {
	p.mu.Lock()
	var victims []*session
	for k, l := range p.idle {
		if k.src != src {
			continue
		}
		kept := l[:0]
		for _, s := range l {
			if s.site == site {
				victims = append(victims, s)
			} else {
				kept = append(kept, s)
			}
		}
		if len(kept) == 0 {
			delete(p.idle, k)
		} else {
			p.idle[k] = kept
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range victims {
		s.timer.Stop()
		wg.Go(func() { s.end(p, true) })
	}
	wg.Wait()
	return len(victims)
}

// acquireLocal takes a connection slot for (src, site) within this process.
func (p *connPool) acquireLocal(src netip.Addr, site string, limit int) (func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := slotKey{src, site}
	if p.open[k] >= limit {
		return nil, false
	}
	p.open[k]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.open[k]--; p.open[k] <= 0 {
				delete(p.open, k)
			}
			p.signal()
		})
	}, true
}

// close says QUIT on every idle session; sessions in use close when their
// transaction ends.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*session
	for _, l := range p.idle {
		all = append(all, l...)
	}
	p.idle = map[connKey][]*session{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		s.timer.Stop()
		wg.Go(func() { s.end(p, true) })
	}
	wg.Wait()
}
