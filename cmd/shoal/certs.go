package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"shoal/pki"
)

func init() {
	register(command{words: "certs init", summary: "create a CA and a server certificate for mutual TLS", run: runCertsInit})
	register(command{words: "certs client", summary: "issue a client certificate (the client's identity)", run: runCertsClient})
	register(command{words: "certs revoke", summary: "revoke a client's certificate (a running server ends its session within a heartbeat)", run: runCertsRevoke})
	register(command{words: "certs list", summary: "list issued client certificates: serial, expiry, revoked, valid", run: runCertsList})
	register(command{words: "certs operator", summary: "issue an operator certificate: opens a non-loopback dashboard (shoal ui), never the Federation service", run: runCertsOperator})
	register(command{words: "certs server", summary: "issue a new server certificate for other hosts, same CA", run: runCertsServer})
}

// certsFlags parses the flags shared by the certs subcommands; name and hosts are registered
// only when the subcommand takes them.
type certsFlags struct {
	dir, name, hosts string
	force, json      bool
}

func parseCertsFlags(words string, args []string, stderr io.Writer, withName, withHosts, withForce bool) (*certsFlags, error) {
	f := &certsFlags{}
	fs := flag.NewFlagSet(words, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.dir, "dir", "", "certificate directory (required)")
	if withName {
		fs.StringVar(&f.name, "name", "", "client name, 1-64 characters of [a-zA-Z0-9._-] (required)")
	}
	if withHosts {
		fs.StringVar(&f.hosts, "hosts", strings.Join(pki.DefaultHosts, ","), "comma-separated DNS names and IP addresses the server certificate is valid for")
	}
	if withForce {
		fs.BoolVar(&f.force, "force", false, "replace an existing CA (every certificate it issued stops working)")
	}
	fs.BoolVar(&f.json, "json", false, "write one JSON object to stdout")
	if err := parseArgs(fs, args); err != nil {
		return nil, err
	}
	if f.dir == "" {
		return nil, usageErrorf("--dir is required")
	}
	if withName {
		if f.name == "" {
			return nil, usageErrorf("--name is required")
		}
		if err := pki.ValidName(f.name); err != nil {
			return nil, usageErrorf("--name: %v", err)
		}
	}
	if withHosts {
		if err := pki.CheckHosts(f.hostList()); err != nil {
			return nil, usageErrorf("--hosts: %v", err)
		}
	}
	return f, nil
}

func (f *certsFlags) hostList() []string {
	var hosts []string
	for _, h := range strings.Split(f.hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return []string{""} // refused by CheckHosts: an explicit empty list is a mistake
	}
	return hosts
}

func certsWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

type certsInitJSON struct {
	Dir        string   `json:"dir"`
	CA         string   `json:"ca"`
	CAKey      string   `json:"ca_key"`
	ServerCert string   `json:"server_cert"`
	ServerKey  string   `json:"server_key"`
	Revoked    string   `json:"revoked_file"`
	Hosts      []string `json:"hosts"`
}

func runCertsInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseCertsFlags("certs init", args, stderr, false, true, true)
	if err != nil {
		return err
	}
	hosts := f.hostList()
	if err := pki.InitCA(f.dir, hosts, f.force); err != nil {
		return err
	}
	out := certsInitJSON{
		Dir: f.dir, CA: filepath.Join(f.dir, pki.CAFile), CAKey: filepath.Join(f.dir, pki.CAKeyFile),
		ServerCert: filepath.Join(f.dir, pki.ServerFile), ServerKey: filepath.Join(f.dir, pki.ServerKeyFile),
		Revoked: filepath.Join(f.dir, pki.RevokedFile), Hosts: hosts,
	}
	if f.json {
		return certsWriteJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "CA:                 %s (key %s: keep it private, off the server machine)\n", out.CA, out.CAKey)
	fmt.Fprintf(stdout, "server certificate: %s (key %s) for %s\n", out.ServerCert, out.ServerKey, strings.Join(hosts, ", "))
	fmt.Fprintf(stdout, "revocation list:    %s (empty; the server refuses every client without it)\n", out.Revoked)
	fmt.Fprintf(stdout, "next: shoal certs client --dir %s --name NAME\n", f.dir)
	return nil
}

func runCertsServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseCertsFlags("certs server", args, stderr, false, true, false)
	if err != nil {
		return err
	}
	hosts := f.hostList()
	if err := pki.IssueServer(f.dir, hosts); err != nil {
		return err
	}
	out := struct {
		ServerCert string   `json:"server_cert"`
		ServerKey  string   `json:"server_key"`
		Hosts      []string `json:"hosts"`
	}{filepath.Join(f.dir, pki.ServerFile), filepath.Join(f.dir, pki.ServerKeyFile), hosts}
	if f.json {
		return certsWriteJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "server certificate: %s (key %s) for %s\n", out.ServerCert, out.ServerKey, strings.Join(hosts, ", "))
	return nil
}

type certsClientJSON struct {
	Name   string `json:"name"`
	Cert   string `json:"cert"`
	Key    string `json:"key"`
	CA     string `json:"ca"`
	Serial string `json:"serial"`
}

func runCertsClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseCertsFlags("certs client", args, stderr, true, false, false)
	if err != nil {
		return err
	}
	if err := pki.IssueClient(f.dir, f.name); err != nil {
		return err
	}
	serial, err := pki.ClientSerial(f.dir, f.name)
	if err != nil {
		return err
	}
	out := certsClientJSON{
		Name: f.name, Serial: serial, CA: filepath.Join(f.dir, pki.CAFile),
		Cert: filepath.Join(f.dir, pki.ClientsDir, f.name+".pem"), Key: filepath.Join(f.dir, pki.ClientsDir, f.name+"-key.pem"),
	}
	if f.json {
		return certsWriteJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "client %q: %s (key %s), serial %s\n", f.name, out.Cert, out.Key, serial)
	fmt.Fprintf(stdout, "give the client %s, %s and %s, in the same layout (ca.pem, clients/)\n", out.CA, out.Cert, out.Key)
	return nil
}

func runCertsRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseCertsFlags("certs revoke", args, stderr, true, false, false)
	if err != nil {
		return err
	}
	if err := pki.Revoke(f.dir, f.name); err != nil {
		return err
	}
	serial, err := pki.ClientSerial(f.dir, f.name)
	if err != nil {
		return err
	}
	out := struct {
		Name        string `json:"name"`
		Serial      string `json:"serial"`
		RevokedFile string `json:"revoked_file"`
	}{f.name, serial, filepath.Join(f.dir, pki.RevokedFile)}
	if f.json {
		return certsWriteJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "revoked client %q (serial %s) in %s; a running server with this list ends its session within a heartbeat and refuses it from then on\n", f.name, serial, out.RevokedFile)
	return nil
}

type certsListEntryJSON struct {
	Name     string    `json:"name"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	Revoked  bool      `json:"revoked"`
	Valid    bool      `json:"valid"`
}

func runCertsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseCertsFlags("certs list", args, stderr, false, false, false)
	if err != nil {
		return err
	}
	clients, err := pki.ListClients(f.dir)
	if err != nil {
		return err
	}
	if f.json {
		out := struct {
			Clients []certsListEntryJSON `json:"clients"`
		}{Clients: []certsListEntryJSON{}}
		for _, c := range clients {
			out.Clients = append(out.Clients, certsListEntryJSON{c.Name, c.Serial, c.NotAfter.UTC(), c.Revoked, c.Valid})
		}
		return certsWriteJSON(stdout, out)
	}
	if len(clients) == 0 {
		fmt.Fprintf(stdout, "no client certificates in %s\n", filepath.Join(f.dir, pki.ClientsDir))
		return nil
	}
	fmt.Fprintf(stdout, "%-24s %-34s %-10s %s\n", "NAME", "SERIAL", "EXPIRES", "STATE")
	for _, c := range clients {
		state := "valid"
		switch {
		case c.Revoked:
			state = "revoked"
		case !c.Valid:
			state = "invalid (other CA or expired)"
		}
		fmt.Fprintf(stdout, "%-24s %-34s %-10s %s\n", c.Name, c.Serial, c.NotAfter.UTC().Format(time.DateOnly), state)
	}
	return nil
}

func runCertsOperator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseCertsFlags("certs operator", args, stderr, true, false, false)
	if err != nil {
		return err
	}
	if err := pki.IssueOperator(f.dir, f.name); err != nil {
		return err
	}
	cert, key := pki.OperatorPaths(f.dir, f.name)
	out := struct {
		Name string `json:"name"`
		Cert string `json:"cert"`
		Key  string `json:"key"`
		CA   string `json:"ca"`
	}{f.name, cert, key, filepath.Join(f.dir, pki.CAFile)}
	if f.json {
		return certsWriteJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "operator %q: %s (key %s); it opens the dashboard (shoal ui, --ui) on a non-loopback address, nothing else\n", f.name, cert, key)
	fmt.Fprintf(stdout, "for a browser: openssl pkcs12 -export -in %s -inkey %s -certfile %s -out %s.p12\n", cert, key, out.CA, f.name)
	return nil
}
