package web

import (
	"net/http"
	"slices"

	"github.com/dirsync/dirsync/host"
)

// previewView is a preview report as the pages show it ("Valid users and
// groups"): users and public folders apart, and where the one-click
// "Create gateway group" returns to.
type previewView struct {
	Name     string
	MayWrite bool
	// Back is the page a group created from the report returns to:
	// "ldap" or "valid".
	Back string
	// Unsaved: the report is of the form as it stands, not of the saved
	// settings.
	Unsaved bool
	Report  *host.Report
	Users   []host.ReportUser
	Folders []host.ReportUser
}

// newPreview makes the view of a report; nil for none.
func newPreview(name string, mayWrite bool, back string, unsaved bool, rep *host.Report) *previewView {
	if rep == nil {
		return nil
	}
	v := &previewView{Name: name, MayWrite: mayWrite, Back: back, Unsaved: unsaved, Report: rep}
	for _, u := range rep.Users {
		if u.Kind == "public_folder" {
			v.Folders = append(v.Folders, u)
		} else {
			v.Users = append(v.Users, u)
		}
	}
	return v
}

// validView is the "Valid users and groups" page of a domain.
type validView struct {
	Name       string
	FromConfig bool
	Preview    *previewView
}

// validPage is GET /domains/{domain}/valid: with ?check=1, a preview of
// the saved settings (a read of the directory; nothing is written).
func (s *server) validPage(w http.ResponseWriter, r *http.Request) {
	q, set, ok := s.pane(w, r)
	if !ok {
		return
	}
	defer q.release()
	v := &validView{Name: set.Name, FromConfig: set.ManagedBy == host.ManagedByConfig}
	p := &page{Title: "Valid users and groups · " + set.Name, Nav: &nav{Domain: set.Name, Current: "valid"}, Valid: v}
	query := r.URL.Query()
	code := http.StatusOK
	if query.Get("check") != "" {
		rep, err := q.h.Preview(r.Context(), set.Name)
		switch {
		case err != nil:
			p.Error, code = sentence(oneLine(err.Error())), http.StatusUnprocessableEntity
		case rep.Error != "":
			p.Error = sentence(oneLine(rep.Error))
		}
		if err == nil {
			v.Preview = newPreview(set.Name, mayWrite(q.p), "valid", false, rep)
		}
		if g := query.Get("group"); g != "" && rep != nil && !slices.Contains(rep.Unmatched, g) {
			p.Flash = "Gateway group " + g + " created: the next sync fills it with the directory group's members."
		}
	}
	s.show(w, r, q, code, "valid", set.Name, p)
}
