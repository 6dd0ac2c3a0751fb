package server

import (
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullmail/pullmail/resource/fsstore"
)

// ResolveNode returns the node name a server runs as: name, or the host
// name when name is empty. Several nodes of a domain share its stores
// (docs/PROTOCOL.md §11.1), and each must have a name of its own that stays
// the same across its restarts: its MTA hands back, when it starts, the
// jobs and pull locks held under that name (its previous run's) and leaves
// every other node's to their leases. A name is at most 64 letters, digits,
// '.', '-' and '_', not starting with '.' (it names a directory).
func ResolveNode(name string) (string, error) {
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("no --node given and no host name to default to: %w", err)
		}
		if !fsstore.ValidNode(host) {
			return "", fmt.Errorf("the host name %q cannot name this node: pass --node NAME", host)
		}
		return host, nil
	}
	if !fsstore.ValidNode(name) {
		return "", fmt.Errorf("--node %q: a node name is at most 64 letters, digits, '.', '-' and '_', not starting with '.'", name)
	}
	return name, nil
}

// nodeInfo is pullmail_node_info{node="NAME"} 1: the series that names the
// node a scrape reached, to join with its other series (the Prometheus
// "info metric" idiom) when several nodes serve one domain.
func nodeInfo(node string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pullmail_node_info",
		Help:        "Always 1; its node label names this server among its domain's nodes (serve --node).",
		ConstLabels: prometheus.Labels{"node": node}})
	g.Set(1)
	return g
}
