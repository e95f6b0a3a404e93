package web

import (
	"html/template"
	"strings"
	"time"

	"github.com/dirsync/dirsync/host/api"
)

// page is what a template renders.
type page struct {
	Title     string
	Principal *api.Principal
	Domains   []domainItem
	// Message is the text of the "message" page.
	Message string
	// Flash says what the last action did; Error why a form was refused.
	Flash string
	Error string
	LDAP  *ldapView
	// Nav links the pages of a domain.
	Nav       *nav
	Groups    *groupsView
	Runs      *runsView
	Run       *runView
	Mailboxes *mailboxesView
	Valid     *validView
}

var funcs = template.FuncMap{
	"join": strings.Join,
	"add":  func(a, b int) int { return a + b },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.Local().Format("2006-01-02 15:04:05 MST")
	},
	"ago": func(t time.Time) string {
		d := time.Until(t).Round(time.Second)
		switch {
		case d > 0:
			return "in " + d.String()
		case d < 0:
			return (-d).String() + " ago"
		}
		return "now"
	},
}

// parsePages parses each page's template with the layout.
func parsePages() map[string]*template.Template {
	base := template.Must(template.New("layout").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/preview.html"))
	out := map[string]*template.Template{}
	for _, name := range []string{"signin", "domains", "ldap", "message", "groups", "runs", "run", "mailboxes", "valid"} {
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
	return out
}
