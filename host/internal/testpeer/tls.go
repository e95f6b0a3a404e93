package testpeer

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
	"time"
)

// TLSFiles are where WriteTLSFiles puts a peer's certificates, as PEM.
type TLSFiles struct {
	CA   string // the certificate of the CA: what a client trusts
	Cert string // the server's certificate
	Key  string // the server's private key, mode 0600
}

// Cert describes the server certificate of WriteTLSFiles.
type Cert struct {
	// CAName is the common name of the CA that issues it.
	CAName string
	// CommonName is the certificate's subject.
	CommonName string
	// DNSNames are the names it is for, besides 127.0.0.1 and ::1.
	DNSNames []string
	// NotAfter ends the validity of both certificates, which starts an
	// hour ago.
	NotAfter time.Time
}

// WriteTLSFiles creates a fresh CA and a server certificate that it
// issues, for 127.0.0.1, ::1 and c.DNSNames, and writes them to files.
func WriteTLSFiles(files TLSFiles, c Cert) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: c.CAName},
		NotBefore:             now,
		NotAfter:              c.NotAfter,
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
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: c.CommonName},
		NotBefore:    now,
		NotAfter:     c.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     c.DNSNames,
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
	write := func(path, typ string, der []byte, mode os.FileMode) error {
		return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
	}
	if err := write(files.CA, "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := write(files.Cert, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	// Samba refuses a key file that others may read.
	return write(files.Key, "PRIVATE KEY", keyDER, 0o600)
}
