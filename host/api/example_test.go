package api_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/api"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

// A gateway vendor mounts the API in their own control panel, next to
// their own pages, and lets their own sign-in decide who a request acts
// for.
func ExampleNew() {
	// The host and its store, as the vendor's program makes them.
	dir, err := os.MkdirTemp("", "dirsync-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(filepath.Join(dir, "dirsync.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	cfg := &config.Config{Domains: []config.Domain{{Name: "example.com", Policy: "standard"}}}
	h, err := host.New(host.Options{Config: cfg, Store: st})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	// The panel's session cookie names an operator and the customer
	// domains they look after.
	panelAuth := api.AuthorizerFunc(func(r *http.Request) (*api.Principal, error) {
		c, err := r.Cookie("panel_session")
		if err != nil || c.Value != "session-of-dana" {
			return nil, errors.New("not signed in to the panel")
		}
		return &api.Principal{Name: "dana@vendor.example", Role: api.RoleAdmin, Domains: []string{"example.com"}}, nil
	})

	mux := http.NewServeMux()
	mux.Handle("/api/", api.New(api.Options{Host: h, Store: st, Authorizer: panelAuth}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "the vendor's own pages")
	})

	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(cookie string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/domains", nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "panel_session", Value: cookie})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%s %s", resp.Status, body)
	}
	get("session-of-dana")
	get("")
	// Output:
	// 200 OK [{"last_run":null,"managed_by":"config","name":"example.com","next_run_at":null,"sync":false}]
	// 401 Unauthorized {"type":"about:blank","title":"Unauthorized","status":401,"detail":"this call needs valid credentials, such as an API token (Authorization: Bearer TOKEN)"}
}
