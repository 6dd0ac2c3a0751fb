package mailbox

import _ "embed"

// OpenAPI is the OpenAPI 3.1 description of the mailbox API (openapi.json
// beside this file), which the server serves at /openapi.json. It is
// normative only where docs/PROTOCOL.md §8 says the same; TestOpenAPI holds it
// to Routes and to the JSON shapes of this package. Callers must not modify it.
//
//go:embed openapi.json
var OpenAPI []byte
