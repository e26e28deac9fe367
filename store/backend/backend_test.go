package backend

import (
	"strings"
	"testing"
)

func TestDispatchAndRedact(t *testing.T) {
	for _, tc := range []struct {
		spec     string
		postgres bool
		redacted string
	}{
		{"runs/fl.db", false, "runs/fl.db"},
		{"postgres-runs/fl.db", false, "postgres-runs/fl.db"},
		{"postgres://shoal:s3cret@db:5432/shoal?sslmode=require", true, "postgres://shoal:xxxxx@db:5432/shoal?sslmode=require"},
		{"PostgreSQL://shoal@db/shoal", true, "postgresql://shoal@db/shoal"},
		{"postgresql://db/shoal?user=shoal&password=s3cret", true, "postgresql://db/shoal?password=xxxxx&user=shoal"},
		{"postgres://shoal:s3cret@db:bad port/x", true, "postgres://(unparsable URL)"},
	} {
		if got := IsPostgres(tc.spec); got != tc.postgres {
			t.Errorf("IsPostgres(%q) = %v", tc.spec, got)
		}
		got := Redact(tc.spec)
		if got != tc.redacted || strings.Contains(got, "s3cret") {
			t.Errorf("Redact(%q) = %q, want %q", tc.spec, got, tc.redacted)
		}
	}
}
