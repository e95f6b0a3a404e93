package samba

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dirsync/dirsync/host/internal/testpeer"
)

// writeTLSFiles puts a CA and a server certificate for 127.0.0.1, ::1,
// localhost and the DC's DNS name where Samba looks for them (private/tls
// of dir): Samba's own certificate has a negative serial number and no
// subjectAltName, which Go's TLS refuses. They are valid for ten years, as
// long as a cached template may live.
func writeTLSFiles(dir, realm string) error {
	tlsDir := filepath.Join(dir, "private", "tls")
	if err := os.MkdirAll(tlsDir, 0o755); err != nil {
		return err
	}
	host := strings.ToLower(hostName + "." + realm)
	return testpeer.WriteTLSFiles(testpeer.TLSFiles{
		CA:   filepath.Join(tlsDir, "ca.pem"),
		Cert: filepath.Join(tlsDir, "cert.pem"),
		Key:  filepath.Join(tlsDir, "key.pem"),
	}, testpeer.Cert{
		CAName:     "dirsync test CA for " + realm,
		CommonName: host,
		DNSNames:   []string{host, "localhost"},
		NotAfter:   time.Now().Add(-time.Hour).AddDate(10, 0, 0),
	})
}
