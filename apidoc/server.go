package apidoc

import (
	"github.com/pullmail/pullmail/discovery"
)

// The server's own endpoints (docs/PROTOCOL.md §8.12), the webmail's entry
// points (§8.15) and the mailbox metadata of discovery (§11.1).
var serverOps = []Op{
	{
		Method:      "GET",
		Path:        "/healthz",
		ID:          "healthz",
		Tags:        []string{"operations"},
		Auth:        Public,
		Summary:     "Health check",
		Description: "200 when the metadata store answers within 2 seconds. No authentication.",
		Responses: []Response{
			{Status: 200, Description: "Healthy.", Content: []Content{{Media: "application/json", Schema: Ref("Health")}}},
			{Status: 503, Description: "`unhealthy`: the metadata store is unavailable.", Content: errorJSON},
		},
	},
	{
		Method:      "GET",
		Path:        "/metrics",
		ID:          "metrics",
		Tags:        []string{"operations"},
		Auth:        Public,
		Summary:     "Prometheus metrics",
		Description: "The server's metrics in the Prometheus text exposition format (or OpenMetrics, by content negotiation). No authentication, but answered only to loopback peers unless the server runs with `--metrics-public` (docs/PROTOCOL.md §8.12).",
		Responses: []Response{
			{Status: 200, Description: "The metrics.", Content: []Content{{Media: "text/plain", Schema: Schema{"type": "string"}}}},
			{Status: 404, Description: "`no_route`: the peer is not on loopback and the metrics are not public.", Content: errorJSON},
		},
	},
	{
		Method:      "GET",
		Path:        "/openapi.json",
		ID:          "openapi",
		Tags:        []string{"operations"},
		Auth:        Public,
		Summary:     "This document",
		Description: "The OpenAPI 3.1 description of every HTTP endpoint, generated from the server's Go routes and types (package apidoc). No authentication.",
		Responses: []Response{
			{Status: 200, Description: "This document.", Content: []Content{{Media: "application/json", Schema: Schema{"type": "object"}}}},
		},
	},
	{
		Method: "GET", Path: "/readyz", ID: "readyz", Tags: []string{"operations"}, Auth: Public,
		Summary:     "Readiness check",
		Description: "200 when the domain can really work: the metadata store commits a tiny write transaction, a file can be made and removed where resources are written and in the upload staging directory, and the data directory's file system has more than a small floor free. Concurrent probes share one run of the checks. No authentication.",
		Responses: []Response{
			{Status: 200, Description: "Ready.", Content: []Content{{Media: "application/json", Schema: Ref("Health")}}},
			{Status: 503, Description: "`unready`: the checks that failed are named in `failed`.", Content: []Content{{Media: "application/json", Schema: Ref("Unready")}}},
		},
	},
	{
		Method: "GET", Path: "/{$}", ID: "root", Tags: []string{"operations"}, Auth: Public,
		Summary:     "The webmail's entry",
		Description: "Redirects to `/webmail/` (docs/PROTOCOL.md §8.15).",
		Responses:   []Response{{Status: 302, Description: "`Location: /webmail/`."}},
	},
	{
		Method: "GET", Path: "/webmail", ID: "webmailRedirect", Tags: []string{"operations"}, Auth: Public,
		Summary:     "The webmail, without the slash",
		Description: "Redirects to `/webmail/`.",
		Responses:   []Response{{Status: 302, Description: "`Location: /webmail/`."}},
	},
	{
		Method: "GET", Path: "/webmail/", ID: "webmail", Tags: []string{"operations"}, Auth: Public,
		Summary:     "The webmail",
		Description: "The webmail's single-page application (docs/PROTOCOL.md §8.15); the files below `/webmail/` are its static assets, and paths it routes itself answer this page. It signs in with the authorization server (Authorization Code + PKCE) and calls the mailbox API.",
		Responses:   []Response{{Status: 200, Description: "The application's page.", Content: []Content{{Media: "text/html", Schema: Schema{"type": "string"}}}}},
	},
	{
		Method: "GET", Path: discovery.PathMailbox, ID: "mailboxMetadata", Tags: []string{"discovery"}, Auth: Public,
		Summary:     "Mailbox metadata",
		Description: "The domain's mailbox service, as other domains discover it (docs/PROTOCOL.md §11.1): its base URL, the federation endpoints, and the DNS-bound identity of its MTA (`mta_client_id`, `mta_jwks`). Cacheable for 5 minutes.",
		Responses: []Response{
			{Status: 200, Description: "The metadata.", Content: []Content{JSON[discovery.MailboxMetadata]()}},
			{Status: 302, Description: "Reached under one of the node's own names (`pullmail serve --host`) other than the public URL's host: `Location` is this path at the public URL (docs/PROTOCOL.md §11.1, several nodes)."},
			{Status: 500, Description: "`internal`: the server's own metadata is misconfigured.", Content: errorJSON},
		},
	},
}

var serverSchemas = map[string]Schema{
	"Unready": {
		"description": "The Error shape with the failing checks.",
		"allOf": []any{Ref("Error"), Schema{"type": "object", "required": []string{"failed"}, "properties": Schema{
			"failed": Schema{"type": "array", "items": Schema{"type": "string", "enum": []string{"metadata", "resources", "uploads", "disk_space"}}},
		}}},
	},
	"JWKS": {
		"description": "A JSON Web Key Set (RFC 7517 §5) of public keys.",
		"type":        "object", "required": []string{"keys"},
		"properties": Schema{"keys": Schema{"type": "array", "items": Schema{
			"type": "object", "required": []string{"kty"},
			"properties": Schema{
				"kty": Schema{"type": "string"}, "crv": Schema{"type": "string"}, "x": Schema{"type": "string"}, "y": Schema{"type": "string"},
				"kid": Schema{"type": "string"}, "alg": Schema{"type": "string"}, "use": Schema{"type": "string"},
			},
		}}},
	},
}

var serverTypes = []Type{
	{Go: TypeOf[discovery.MailboxMetadata](), Name: "MailboxMetadata", Fields: map[string]Schema{
		"domain":           {"description": "The domain; it must be the one asked for."},
		"url":              {"description": "The mailbox service's base URL, the one the document was fetched from.", "format": "uri"},
		"inbound_endpoint": {"description": "Where other domains push (docs/PROTOCOL.md §11.2).", "format": "uri"},
		"fetch_endpoint":   {"description": "Where other domains pull resources from, `/{content-id}` appended (§11.3).", "format": "uri"},
		"mta_client_id":    {"description": "`mta@` and the domain: the MTA's OAuth client id at other domains' authorization servers."},
		"mta_jwks":         Ref("JWKS"),
	}},
}
