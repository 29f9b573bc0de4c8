package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pki holds the paths of the generated files plus what the kubeconfig needs.
// Files are generated once and reused when DIR is reused.
type pki struct {
	caCert       string // CA that signed the serving cert (certificate-authority-data)
	servingCert  string
	servingKey   string
	saKey        string // service-account signing key (private)
	saPub        string // service-account verification key (public)
	tokenFile    string // static token file
	caPEM        []byte
	adminToken   string
	tokens       map[string]string // user name -> bearer token, for every user in tokenFile
	saIssuer     string
	clusterRange string
}

func ensurePKI(dir string) (*pki, error) {
	pdir := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{
		caCert:       filepath.Join(pdir, "ca.crt"),
		servingCert:  filepath.Join(pdir, "apiserver.crt"),
		servingKey:   filepath.Join(pdir, "apiserver.key"),
		saKey:        filepath.Join(pdir, "sa.key"),
		saPub:        filepath.Join(pdir, "sa.pub"),
		tokenFile:    filepath.Join(pdir, "tokens.csv"),
		saIssuer:     "https://kubernetes.default.svc.cluster.local",
		clusterRange: "10.96.0.0/16",
	}
	caKeyPath := filepath.Join(pdir, "ca.key")
	if !exists(p.caCert, caKeyPath, p.servingCert, p.servingKey) {
		if err := genServing(p.caCert, caKeyPath, p.servingCert, p.servingKey); err != nil {
			return nil, err
		}
	}
	if !exists(p.saKey, p.saPub) {
		if err := genSAKey(p.saKey, p.saPub); err != nil {
			return nil, err
		}
	}
	if err := ensureTokens(p.tokenFile); err != nil {
		return nil, err
	}
	var err error
	if p.caPEM, err = os.ReadFile(p.caCert); err != nil {
		return nil, err
	}
	if p.tokens, err = readTokens(p.tokenFile); err != nil {
		return nil, err
	}
	p.adminToken = p.tokens[userAdmin]
	return p, nil
}

// The static-token users: the admin (group system:masters) and the two components,
// under the user names that the bootstrap RBAC policy binds their roles to.
const (
	userAdmin             = "admin"
	userControllerManager = "system:kube-controller-manager"
	userScheduler         = "system:kube-scheduler"
	// The real node's kubelet (--real-node), a node identity for the Node authorizer.
	userRealNode = "system:node:" + realNodeName
)

var tokenUsers = []struct{ name, groups string }{
	{userAdmin, "system:masters"},
	{userControllerManager, ""},
	{userScheduler, ""},
	{userRealNode, "system:nodes"},
}

// ensureTokens gives every user in tokenUsers a random token in the static token
// file, keeping the tokens already there (a reused DIR keeps its kubeconfigs valid).
func ensureTokens(path string) error {
	have := map[string]string{}
	if exists(path) {
		var err error
		if have, err = readTokens(path); err != nil {
			return err
		}
	}
	var b strings.Builder
	for _, u := range tokenUsers {
		tok := have[u.name]
		if tok == "" {
			buf := make([]byte, 32)
			if _, err := rand.Read(buf); err != nil {
				return err
			}
			tok = hex.EncodeToString(buf)
		}
		// token,user,uid,"group1,group2"
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", tok, u.name, u.name, u.groups)
	}
	return writeFileAtomic(path, []byte(b.String()))
}

func readTokens(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	tokens := map[string]string{}
	for _, rec := range recs {
		if len(rec) >= 2 && strings.TrimSpace(rec[0]) != "" {
			tokens[rec[1]] = strings.TrimSpace(rec[0])
		}
	}
	if tokens[userAdmin] == "" {
		return nil, fmt.Errorf("%s has no admin token", path)
	}
	return tokens, nil
}

func exists(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// genServing creates a CA and a serving certificate signed by it (separate
// leaf rather than a self-signed CA leaf: rustls/webpki rejects a CA
// certificate used as an end-entity certificate).
func genServing(caCertPath, caKeyPath, certPath, keyPath string) error {
	now := time.Now().Add(-time.Hour)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kube-controlplane-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
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
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.96.0.1")},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return errors.Join(
		writePEM(caKeyPath, "EC PRIVATE KEY", caKeyDER, 0o600),
		writePEM(caCertPath, "CERTIFICATE", caDER, 0o644),
		writePEM(keyPath, "EC PRIVATE KEY", keyDER, 0o600),
		writePEM(certPath, "CERTIFICATE", der, 0o644),
	)
}

func genSAKey(keyPath, pubPath string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	return errors.Join(
		writePEM(keyPath, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600),
		writePEM(pubPath, "PUBLIC KEY", pubDER, 0o644),
	)
}

// genLeaf signs a certificate with the CA in caCertPath/caKeyPath (made by genServing):
// the real node's kubelet serving certificate and the apiserver's kubelet client certificate.
// Kept when both files exist.
func genLeaf(caCertPath, caKeyPath, certPath, keyPath string, subject pkix.Name, usage x509.ExtKeyUsage, ips []net.IP, dns []string) error {
	if exists(certPath, keyPath) {
		return nil
	}
	caPEM, err := os.ReadFile(caCertPath)
	if err != nil {
		return err
	}
	caKeyPEM, err := os.ReadFile(caKeyPath)
	if err != nil {
		return err
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(caKeyPEM)
	if cb == nil || kb == nil {
		return fmt.Errorf("cannot parse %s or %s", caCertPath, caKeyPath)
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return err
	}
	caKey, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               subject,
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
		IPAddresses:           ips,
		DNSNames:              dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return errors.Join(
		writePEM(keyPath, "EC PRIVATE KEY", keyDER, 0o600),
		writePEM(certPath, "CERTIFICATE", der, 0o644),
	)
}
