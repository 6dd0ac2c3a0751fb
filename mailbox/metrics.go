package mailbox

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the mailbox does. A nil *Metrics counts nothing.
type Metrics struct {
	uploads     prometheus.Counter
	uploadBytes prometheus.Counter
	sends       prometheus.Counter
	deliveries  prometheus.Counter
	// autoForwards counts what the users' forwarding rules did, by result
	// (autoforward.go).
	autoForwards *prometheus.CounterVec
}

// NewMetrics registers the mailbox's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		uploads:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pullmail_uploads_total", Help: "Resources uploaded."}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "pullmail_upload_bytes_total", Help: "Bytes of uploaded resources."}),
		sends:       prometheus.NewCounter(prometheus.CounterOpts{Name: "pullmail_sends_total", Help: "Messages sent."}),
		deliveries:  prometheus.NewCounter(prometheus.CounterOpts{Name: "pullmail_local_deliveries_total", Help: "Copies delivered to local inboxes."}),
	}
	m.autoForwards = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pullmail_autoforwards_total",
		Help: "Messages the users' automatic forwarding rules forwarded (queued) or skipped, by result."}, []string{"result"})
	reg.MustRegister(m.uploads, m.uploadBytes, m.sends, m.deliveries, m.autoForwards)
	return m
}

func (m *Metrics) upload(size int64) {
	if m != nil {
		m.uploads.Inc()
		m.uploadBytes.Add(float64(size))
	}
}

func (m *Metrics) sent(local int) {
	if m != nil {
		m.sends.Inc()
		m.deliveries.Add(float64(local))
	}
}

func (m *Metrics) autoForward(result string) {
	if m != nil {
		m.autoForwards.WithLabelValues(result).Inc()
	}
}
