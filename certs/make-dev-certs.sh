#!/usr/bin/env bash
# Makes the development CA and a certificate for localhost that the demo and
# the example config use. These keys are public: sessiongate refuses to serve
# them on a non-loopback address unless started with --allow-dev-certificate.
#
# Run from this folder: ./make-dev-certs.sh   (needs openssl)
set -euo pipefail
cd "$(dirname "$0")"
days=3650

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout dev-ca.key -out dev-ca.crt -days "$days" \
  -subj "/CN=sessiongate development CA (do not trust in production)" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"

openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout dev.key -out dev.csr -subj "/CN=localhost"
openssl x509 -req -in dev.csr -CA dev-ca.crt -CAkey dev-ca.key -CAcreateserial \
  -out dev.crt -days "$days" \
  -extfile <(printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:localhost,DNS:*.localhost,IP:127.0.0.1,IP:::1")
rm -f dev.csr dev-ca.srl
# The chain the gateway serves: leaf first, then the CA.
cat dev.crt dev-ca.crt > dev-chain.crt
echo "made dev-ca.crt, dev.crt, dev-chain.crt, dev.key"
