package samba

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dirsync test CA for " + realm},
		NotBefore:             now,
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	host := strings.ToLower(hostName + "." + realm)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now,
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	write := func(name, typ string, der []byte, mode os.FileMode) error {
		return os.WriteFile(filepath.Join(tlsDir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
	}
	if err := write("ca.pem", "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := write("cert.pem", "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	// Samba refuses a key file that others may read.
	return write("key.pem", "PRIVATE KEY", keyDER, 0o600)
}
