package chstore

import (
	"time"

	"github.com/outflowmail/outflow/pkg/events"
)

// ipEventsTable stores the platform's own per-IP events: backoff actions
// (shaping) and DNSBL listing changes, one row each.
func ipEventsTable() table {
	return table{
		name: "ip_events",
		columns: "event_id, time, tenant, msg_id, kind, source_ip, site, rule, action, until, zone, " +
			"listed, detail, sender",
		timeColumn: "time",
		rows:       ipEventRows,
		rowTime:    func(e *events.Event) time.Time { return dateTime(e.Time) },
	}
}

func ipEventStorable(e *events.Event) bool {
	return (e.Type == events.TypeShaping && e.Shaping != nil) || (e.Type == events.TypeDNSBL && e.DNSBL != nil)
}

func ipEventRows(e *events.Event) [][]any {
	switch {
	case e.Type == events.TypeShaping && e.Shaping != nil:
		s := e.Shaping
		return [][]any{{e.ID, dateTime(e.Time), e.Tenant, e.MsgID, string(e.Type), s.SourceIP, s.Site, s.Rule,
			s.Action, dateTime(s.Until), "", uint8(0), s.Reply, s.Sender}}
	case e.Type == events.TypeDNSBL && e.DNSBL != nil:
		d := e.DNSBL
		detail := d.Answer
		if d.Reason != "" {
			detail += " " + d.Reason
		}
		return [][]any{{e.ID, dateTime(e.Time), e.Tenant, e.MsgID, string(e.Type), d.IP, "", "",
			"", dateTime(time.Time{}), d.Zone, boolU8(d.Listed), detail, ""}}
	}
	return nil
}
