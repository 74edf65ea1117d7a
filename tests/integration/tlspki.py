"""tlspki: a throw-away PKI for the TLS and WebSocket tests (issue 9).

Everything is generated with the `openssl` command line into a temporary
directory during the test run; no key is checked in. EC P-256 keys keep it
fast. `openssl ca` is used so that certificates can be expired (explicit
validity dates) and revoked (a CRL).
"""

import os
import subprocess
import tempfile

CA_CNF = """[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 30
policy = policy_any
copy_extensions = copy
unique_subject = no
[ policy_any ]
commonName = supplied
organizationName = optional
"""


def _run(*argv, cwd=None):
    r = subprocess.run(list(argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(argv), r.stdout.decode(errors="replace")))
    return r.stdout


class CA:
    """A certificate authority in its own directory, able to issue, revoke and publish a CRL."""

    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, "newcerts"))
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.dir, "crlnumber"), "w") as f:
            f.write("1000\n")
        self.cnf = os.path.join(self.dir, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF.format(dir=self.dir))
        self.key = os.path.join(self.dir, "ca.key")
        self.crt = os.path.join(self.dir, "ca.crt")
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", self.key, "-out", self.crt, "-days", "30",
             "-subj", "/CN=midge test %s" % name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, name, subj, san=None, start=None, end=None, out_dir=None):
        """Issues a certificate; returns (crt, key) paths. start/end: YYYYMMDDHHMMSSZ."""
        d = out_dir or self.dir
        key = os.path.join(d, name + ".key")
        csr = os.path.join(d, name + ".csr")
        crt = os.path.join(d, name + ".crt")
        argv = ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-out", csr, "-subj", subj]
        if san:
            argv += ["-addext", "subjectAltName=" + san]
        _run(*argv)
        argv = ["openssl", "ca", "-batch", "-notext", "-config", self.cnf, "-cert", self.crt,
                "-keyfile", self.key, "-in", csr, "-out", crt]
        if start:
            argv += ["-startdate", start]
        if end:
            argv += ["-enddate", end]
        _run(*argv)
        return crt, key

    def revoke(self, crt):
        _run("openssl", "ca", "-config", self.cnf, "-cert", self.crt, "-keyfile", self.key,
             "-revoke", crt)

    def crl(self, path):
        _run("openssl", "ca", "-gencrl", "-config", self.cnf, "-cert", self.crt, "-keyfile",
             self.key, "-out", path)
        return path


class PKI:
    """The test PKI: CA, a second unrelated CA, server and client certificates, a CRL.

    Attributes are paths: ca, server_crt/server_key, alice_crt/alice_key (good),
    bob_* (revoked in `crl`), old_* (expired), eve_* (issued by the other CA),
    server2_* (a second server certificate, for reload tests).
    """

    def __init__(self, root=None):
        self.dir = tempfile.mkdtemp(prefix="pki-", dir=root)
        ca = CA(self.dir, "ca")
        other = CA(self.dir, "other-ca")
        self.ca = ca.crt
        self.other_ca = other.crt
        self.server_crt, self.server_key = ca.issue(
            "server", "/CN=localhost", san="DNS:localhost,IP:127.0.0.1")
        self.server2_crt, self.server2_key = ca.issue(
            "server2", "/CN=localhost", san="DNS:localhost,IP:127.0.0.1")
        self.alice_crt, self.alice_key = ca.issue(
            "alice", "/O=Midge Test/CN=alice", san="email:alice@example.com,DNS:alice.example.com,IP:10.1.2.3")
        self.bob_crt, self.bob_key = ca.issue("bob", "/CN=bob")
        self.old_crt, self.old_key = ca.issue("old", "/CN=old", start="20200101000000Z",
                                              end="20200201000000Z")
        self.eve_crt, self.eve_key = other.issue("eve", "/CN=eve")
        ca.revoke(self.bob_crt)
        self.crl = ca.crl(os.path.join(self.dir, "crl.pem"))
