// Package ui is Shoal's dashboard: an http.Handler serving server-rendered pages (run overview,
// charts, connected clients, compare runs) with a small embedded script and stylesheet, the
// same data as documented JSON under /api/, and live updates by Server-Sent Events.
//
// A page shows Sources: a Live run fed by the engine's hooks (no polling, no files read), and
// finished run directories (OpenDir reads summary.json, metrics.csv and config.toml). The
// dashboard is read-only: it serves GET and HEAD only. Listen opens it on loopback in plain
// HTTP (answering only requests that name a loopback host: no DNS rebinding), and on any other
// address only over TLS with an operator's client certificate (pki.OperatorTLS), re-checked
// against the revocation list on every request and every second of an event stream; else it
// refuses to start.
//
// Charts are SVG drawn by the server (svg.go): no JavaScript library, no build step, the same
// picture with scripts off, and a live update is the server's fragment swapped in place.
//
// What a client sent is never shown: the clients page lists identities, sessions, rounds
// joined and failures, not losses, example counts or anything of an update (see docs/ui.md).
package ui
