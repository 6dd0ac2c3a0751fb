package mta

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullmail/pullmail/meta"
)

// Reasons a job gives up for: the label of pullmail_mta_failures_total and
// the code that starts a failed pull's status_reason (docs/PROTOCOL.md
// §11.4). They are stable: dashboards and clients match on them.
const (
	// ReasonRefused: the peer answered a permanent refusal (a 4xx other
	// than 408 and 429: unknown recipient, resource not found or gone).
	ReasonRefused = "refused"
	// ReasonHorizon: every attempt failed for a temporary reason (network,
	// 5xx, 408, 429, local storage) until the job's retry horizon.
	ReasonHorizon = "horizon"
	// ReasonNoDomain: the domain does not take part (no SRV record, or a
	// "." target).
	ReasonNoDomain = "no_domain"
	// ReasonInvalid: the job cannot run here (a payload that does not
	// parse, a key that cannot sign).
	ReasonInvalid = "invalid"
)

// Job classes, the kind label of the metrics: a forward is a push job of
// its own class, so that a busy forwarding rule shows apart from sends.
const (
	classPush    = JobPush
	classForward = "forward"
	classPull    = JobPull
)

// classOf returns j's class (QueueForward's keys start "forward:").
func classOf(j meta.Job) string {
	if j.Kind == JobPush && strings.HasPrefix(j.Key, "forward:") {
		return classForward
	}
	return j.Kind
}

// metrics are the MTA's counters; they count whether or not they are
// registered (Config.Metrics nil), which keeps the callers free of checks.
type metrics struct {
	retries  *prometheus.CounterVec // class
	failures *prometheus.CounterVec // class, reason
	storage  prometheus.Counter
	// sts counts what a domain's MTA-STS policy (RFC 8461) refused or, in
	// mode testing, would have refused: by mode and reason (mx_mismatch,
	// starttls, certificate; policy_fetch when the record stands but no
	// policy could be had, mode "").
	sts *prometheus.CounterVec
	// smtpSessions counts SMTP transactions by session: "new" or "reused".
	smtpSessions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, m *MTA) (*metrics, error) {
	ms := &metrics{
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_mta_retries_total",
			Help: "Job attempts that failed for a temporary reason and were queued again, by kind (push, forward, pull)."},
			[]string{"kind"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_mta_failures_total",
			Help: "Jobs given up for good, by kind and reason (refused, horizon, no_domain, invalid)."},
			[]string{"kind", "reason"}),
		storage: prometheus.NewCounter(prometheus.CounterOpts{Name: "pullmail_mta_storage_errors_total",
			Help: "Job attempts that failed on this domain's own storage (resource store, pull staging, metadata)."}),
		sts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_mta_sts_failures_total",
			Help: "SMTP deliveries that an MTA-STS policy refused (mode enforce) or would have (testing), by mode and reason (mx_mismatch, starttls, certificate, policy_fetch)."},
			[]string{"mode", "reason"}),
		smtpSessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_mta_smtp_transactions_total",
			Help: "SMTP transactions (MAIL FROM) to mail exchangers, by session: new (a connection dialled for it) or reused."},
			[]string{"session"}),
	}
	if reg == nil {
		return ms, nil
	}
	for _, c := range []prometheus.Collector{ms.retries, ms.failures, ms.storage, ms.sts, ms.smtpSessions, depth{m}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// depth reports pullmail_mta_queue_depth at each scrape from the metadata
// store, so that it is right across restarts and whoever queued the jobs
// (the mailbox's sends, inbound's pulls).
type depth struct{ m *MTA }

var depthDesc = prometheus.NewDesc("pullmail_mta_queue_depth",
	"Jobs queued or running, by kind (push, forward, pull).", []string{"kind"}, nil)

func (d depth) Describe(ch chan<- *prometheus.Desc) { ch <- depthDesc }

func (d depth) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, q := range []struct{ class, kind, prefix string }{
		{classPush, JobPush, "push:"}, {classForward, JobPush, "forward:"}, {classPull, JobPull, ""},
	} {
		n, err := d.m.cfg.Meta.CountJobs(ctx, q.kind, q.prefix)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(depthDesc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(n), q.class)
	}
}
