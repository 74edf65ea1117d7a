"""auth-passwd and midge_passwd (issue 5): password-file authentication that
mosquitto admins can migrate to.

A real midge loads build/plugins/auth-passwd/.libs/auth-passwd.so with a
password file written by mosquitto_passwd (tests/fixtures/passwd) or by
midge_passwd; real clients (mosquitto_pub/sub, paho v3.1.1 and v5, the raw
client) log in. A real mosquitto broker reads a file written by midge_passwd.

Reason codes: MQTT 5 CONNACK 0x86 Bad User Name or Password, 0x87 Not
authorized, 0x89 Server busy, 0x9F Connection rate exceeded (3.2.2.2);
MQTT 3.1.1 CONNACK return codes 4 and 5 (3.2.2.3). A refused CONNACK has a
non-zero code and the connection is then closed [MQTT-3.2.2-5].
"""

import os
import pty
import pwd
import select
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from midgetest import (Broker, BrokerTest, PahoClient, RawClient, only_midge, tmp_root, wait_until,
                       HOST, QUIET, TIMEOUT, CONNACK, DISCONNECT)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MIDGE_SRCDIR", os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(HERE, "..", "fixtures", "passwd")
PBKDF2_FIXTURE = os.path.join(FIXTURES, "mosquitto-2.0.11-sha512-pbkdf2.passwd")
SHA512_FIXTURE = os.path.join(FIXTURES, "mosquitto-2.0.11-sha512.passwd")
MOSQUITTO = os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto")


def _build():
    for base in (os.environ.get("MIDGE_BUILDDIR"), os.path.join(SRC, "build")):
        if base and os.path.exists(os.path.join(base, "plugins", "auth-passwd", "midge_passwd")):
            return os.path.abspath(base)
    return None


BUILD = _build()
need_build = unittest.skipUnless(
    BUILD, "auth-passwd not built: run through `make check` or set MIDGE_BUILDDIR")
PLUGIN = os.path.join(BUILD or "/nonexistent", "plugins", "auth-passwd", ".libs", "auth-passwd.so")
MIDGE_PASSWD = os.path.join(BUILD or "/nonexistent", "plugins", "auth-passwd", "midge_passwd")

# Fewer PBKDF2 iterations than the default keep the suite fast (one default
# login costs ~0.1 s of CPU, much more under sanitizers).
FAST = ["-I", "1000"]


def midge_passwd(*args, input=None):
    """Runs midge_passwd; returns (exit code, stdout, stderr)."""
    p = subprocess.run([MIDGE_PASSWD] + list(args), capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL if input is None else None, input=input)
    return p.returncode, p.stdout, p.stderr


def mosquitto_pub(port, user, password, version="mqttv311", topic="t", msg="m"):
    """Returns mosquitto_pub's exit code and stderr (its CONNACK complaint)."""
    argv = ["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", topic, "-m", msg, "-V", version,
            "-q", "1"]
    if user is not None:
        argv += ["-u", user]
    if password is not None:
        argv += ["-P", password]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


@need_build
@only_midge("auth-passwd is a midge plugin")
class AuthPasswdTest(BrokerTest):
    """Each test starts its own broker with start(); self.pwfile is a private copy."""
    CONFIG = None

    def setUp(self):
        self._clients = []
        self.broker = None
        self.dir = tempfile.mkdtemp(prefix="pw-", dir=tmp_root())
        self.pwfile = os.path.join(self.dir, "passwd")

    def tearDown(self):
        if self.broker is not None:
            super().tearDown()

    def use_fixture(self, path):
        with open(path) as f, open(self.pwfile, "w") as g:
            g.write(f.read())
        os.chmod(self.pwfile, 0o600)

    def config(self, extra=(), anonymous=False, pwfile=None):
        lines = ["allow_anonymous %s" % ("true" if anonymous else "false"),
                 "plugin " + PLUGIN,
                 "plugin_opt_password_file " + (pwfile or self.pwfile)]
        if not any(l.startswith("plugin_opt_fail_delay ") for l in extra):
            lines.append("plugin_opt_fail_delay 0")  # most tests check verdicts, not delays
        return lines + list(extra)

    def start(self, extra=(), anonymous=False):
        self.broker = Broker(self.config(extra, anonymous)).start()
        self.port = self.broker.port
        return self.broker

    def hup(self, expect="reloaded"):
        """SIGHUP, then wait for the plugin's reload log line (or `expect`)."""
        before = self.broker.log_text().count(expect)
        self.broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.broker.log_text().count(expect) > before,
                   what="log line %r after SIGHUP" % expect)

    def raw_connect(self, version, user, password, client_id=None):
        """A raw CONNECT; returns the CONNACK (connection closed after a refusal)."""
        c = self.raw(version=version, connect=False)
        return c, c.connect(client_id or "raw-%d" % id(c), username=user,
                            password=None if password is None else password.encode(),
                            expect_rc=None, timeout=10)

    def paho_login(self, version, user, password, client_id=""):
        c = self.paho(client_id=client_id, version=version, connect=False)
        c.c.username_pw_set(user, password)
        flags, rc, props = c.connect(timeout=10)
        return c, int(rc.value if hasattr(rc, "value") else rc)

    # -- mosquitto_passwd's files, as an admin migrating from mosquitto has them

    def test_mosquitto_passwd_pbkdf2_file_with_mosquitto_clients(self):
        """The default format of mosquitto_passwd 2.0.11 ($7$, 101 iterations) works as it is."""
        self.use_fixture(PBKDF2_FIXTURE)
        self.start()
        sub = self.track(subprocess.Popen(
            ["mosquitto_sub", "-h", HOST, "-p", str(self.port), "-t", "pw/#", "-C", "1",
             "-u", "bob", "-P", "b0b:with:colons", "-q", "1", "-V", "mqttv5", "-i", "sub1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        self.broker.wait_log(lambda l: "client connected client=sub1" in l)
        # The SUBSCRIBE follows the CONNACK: publish until the message arrives (no fixed sleep).
        def delivered():
            rc, err = mosquitto_pub(self.port, "carol", "ünïcødé pässwörd", topic="pw/x",
                                    msg="hello")
            self.assertEqual(rc, 0, err)
            try:
                out, _ = sub.communicate(timeout=0.5)
                return out
            except subprocess.TimeoutExpired:
                return None
        self.assertEqual(wait_until(delivered, timeout=10, what="message to mosquitto_sub").strip(),
                         "hello")

    def test_mosquitto_passwd_sha512_file(self):
        """The old $6$ format (mosquitto_passwd -H sha512) works too."""
        self.use_fixture(SHA512_FIXTURE)
        self.start()
        self.assertEqual(mosquitto_pub(self.port, "dave", "x")[0], 0)
        rc, err = mosquitto_pub(self.port, "dave", "y")
        self.assertNotEqual(rc, 0)
        self.assertIn("bad user name or password", err.lower())

    # -- verdicts and reason codes

    def test_right_and_wrong_password_v311(self):
        """v3.1.1: right password accepted (0), wrong password return code 4 [MQTT-3.2.2-5]."""
        self.use_fixture(PBKDF2_FIXTURE)
        self.start()
        c, rc = self.paho_login(4, "alice", "correct horse")
        self.assertEqual(rc, 0)
        c, rc = self.paho_login(4, "alice", "correct horsE")
        self.assertEqual(rc, 4)
        c, ca = self.raw_connect(4, "alice", "nope")
        self.assertEqual(ca.rc, 4)
        c.expect_closed()

    def test_right_and_wrong_password_v5(self):
        """v5: right password accepted, wrong password CONNACK 0x86, then closed [MQTT-3.2.2-7]."""
        self.use_fixture(PBKDF2_FIXTURE)
        self.start()
        c, rc = self.paho_login(5, "alice", "correct horse")
        self.assertEqual(rc, 0)
        c, rc = self.paho_login(5, "alice", "wrong")
        self.assertEqual(rc, 0x86)
        c, ca = self.raw_connect(5, "alice", None)  # user name, no password
        self.assertEqual(ca.rc, 0x86)
        c.expect_closed()

    def test_unknown_user_same_answer_as_wrong_password(self):
        """An unknown user is answered exactly like a wrong password (v3 4, v5 0x86)."""
        self.use_fixture(PBKDF2_FIXTURE)
        self.start()
        for version, code in ((4, 4), (5, 0x86)):
            c, ca = self.raw_connect(version, "mallory", "correct horse")
            self.assertEqual(ca.rc, code)
            c.expect_closed()
        self.broker.wait_log(lambda l: "login failed user=mallory" in l and "unknown-user" in l)

    def test_anonymous_without_allow_anonymous(self):
        """No user name: the plugin defers; allow_anonymous false refuses (v3 5, v5 0x87)."""
        self.use_fixture(PBKDF2_FIXTURE)
        self.start(anonymous=False)
        for version, code in ((4, 5), (5, 0x87)):
            c, ca = self.raw_connect(version, None, None)
            self.assertEqual(ca.rc, code)
        rc, err = mosquitto_pub(self.port, None, None)
        self.assertNotEqual(rc, 0)

    def test_anonymous_with_allow_anonymous(self):
        """No user name with allow_anonymous true: accepted; a wrong password still is not."""
        self.use_fixture(PBKDF2_FIXTURE)
        self.start(anonymous=True)
        c, ca = self.raw_connect(5, None, None)
        self.assertEqual(ca.rc, 0)
        self.assertEqual(mosquitto_pub(self.port, None, None)[0], 0)
        c, ca = self.raw_connect(5, "alice", "wrong")
        self.assertEqual(ca.rc, 0x86)

    # -- SIGHUP

    def test_sighup_adds_and_removes_users(self):
        """midge_passwd adds a user, SIGHUP, it logs in; -D removes it, SIGHUP, it is refused."""
        self.assertEqual(midge_passwd("-c", "-b", *FAST, self.pwfile, "alice", "a1")[0], 0)
        self.start()
        self.assertEqual(self.raw_connect(5, "newbie", "n3w")[1].rc, 0x86)
        self.assertEqual(midge_passwd("-b", *FAST, self.pwfile, "newbie", "n3w")[0], 0)
        self.hup("users=2 (changed")
        self.assertEqual(self.raw_connect(5, "newbie", "n3w")[1].rc, 0)
        self.assertEqual(midge_passwd("-D", self.pwfile, "newbie")[0], 0)
        self.hup("users=1 (changed")
        self.assertEqual(self.raw_connect(5, "newbie", "n3w")[1].rc, 0x86)
        self.assertEqual(self.raw_connect(4, "alice", "a1")[1].rc, 0)

    def test_sighup_password_change_empties_cache(self):
        """A cached login stops working once the password changed and SIGHUP re-read the file."""
        self.assertEqual(midge_passwd("-c", "-b", *FAST, self.pwfile, "alice", "old")[0], 0)
        self.start()
        self.assertEqual(self.raw_connect(5, "alice", "old")[1].rc, 0)
        self.assertEqual(self.raw_connect(5, "alice", "old")[1].rc, 0)
        self.broker.wait_log(lambda l: "login user=alice" in l and "cache=hit" in l)
        self.assertEqual(midge_passwd("-b", *FAST, self.pwfile, "alice", "new")[0], 0)
        self.hup("cache emptied")
        self.assertEqual(self.raw_connect(5, "alice", "old")[1].rc, 0x86)
        self.assertEqual(self.raw_connect(5, "alice", "new")[1].rc, 0)

    def test_malformed_file_at_reload_keeps_old_table(self):
        """A broken file at SIGHUP: FILE:LINE in the log, the previous users still work."""
        self.assertEqual(midge_passwd("-c", "-b", *FAST, self.pwfile, "alice", "a1")[0], 0)
        self.start()
        with open(self.pwfile, "a") as f:
            f.write("# a comment\nbob:hunter2\n")
        self.broker.proc.send_signal(signal.SIGHUP)
        line = self.broker.wait_log(lambda l: "%s:3: password is not hashed" % self.pwfile in l)
        self.assertIn("keeping the old", line)
        self.assertTrue(self.broker.alive())
        self.assertEqual(self.raw_connect(5, "alice", "a1")[1].rc, 0)
        self.assertEqual(self.raw_connect(5, "bob", "hunter2")[1].rc, 0x86)

    def test_disconnect_on_reload(self):
        """disconnect_on_reload: a connected client whose password changed gets DISCONNECT 0x98."""
        self.assertEqual(midge_passwd("-c", "-b", *FAST, self.pwfile, "alice", "a1")[0], 0)
        self.assertEqual(midge_passwd("-b", *FAST, self.pwfile, "bob", "b1")[0], 0)
        self.start(["plugin_opt_disconnect_on_reload true"])
        alice, ca = self.raw_connect(5, "alice", "a1", client_id="alice-1")
        self.assertEqual(ca.rc, 0)
        bob, ca = self.raw_connect(5, "bob", "b1", client_id="bob-1")
        self.assertEqual(ca.rc, 0)
        self.assertEqual(midge_passwd("-b", *FAST, self.pwfile, "alice", "a2")[0], 0)
        self.hup("cache emptied")
        alice.expect_disconnect(0x98)
        self.assertTrue(bob.is_open())

    # -- start-up errors

    def test_missing_file_refuses_to_start(self):
        """A missing password file: a clear error naming it, and the broker does not start."""
        b = Broker(self.config(pwfile=os.path.join(self.dir, "nope")))
        with self.assertRaises(AssertionError):
            b.start(timeout=5)
        b.proc.wait(10)
        self.assertNotEqual(b.proc.returncode, 0)
        self.assertIn("%s: cannot open: No such file or directory" % os.path.join(self.dir, "nope"),
                      b.log_text())

    def test_broken_file_refuses_to_start(self):
        """A line with an unknown hash type is an error naming FILE:LINE, never skipped."""
        with open(self.pwfile, "w") as f:
            f.write("# users\nalice:$1$salt$md5crypt\n")
        b = Broker(self.config())
        with self.assertRaises(AssertionError):
            b.start(timeout=5)
        b.proc.wait(10)
        self.assertNotEqual(b.proc.returncode, 0)
        self.assertIn("%s:2: unknown hash type" % self.pwfile, b.log_text())

    # -- protection

    def test_rate_limited_after_max_failures(self):
        """After max_failures wrong passwords from one address, even the right one gets 0x9F."""
        self.assertEqual(midge_passwd("-c", "-b", *FAST, self.pwfile, "alice", "a1")[0], 0)
        self.start(["plugin_opt_max_failures 3", "plugin_opt_fail_delay_max 0"])
        for _ in range(3):
            self.assertEqual(self.raw_connect(5, "alice", "guess")[1].rc, 0x86)
        self.assertEqual(self.raw_connect(5, "alice", "a1")[1].rc, 0x9F)
        self.assertEqual(self.raw_connect(4, "alice", "a1")[1].rc, 5)
        self.broker.wait_log(lambda l: "reason=rate-limited" in l)

    def test_repeated_failures_are_delayed(self):
        """The second failure in a row is answered no sooner than fail_delay."""
        self.assertEqual(midge_passwd("-c", "-b", *FAST, self.pwfile, "alice", "a1")[0], 0)
        self.start(["plugin_opt_fail_delay 0.4", "plugin_opt_fail_delay_max 0.4"])
        self.assertEqual(self.raw_connect(5, "alice", "guess")[1].rc, 0x86)
        t0 = time.monotonic()
        self.assertEqual(self.raw_connect(5, "alice", "guess")[1].rc, 0x86)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        self.broker.wait_log(lambda l: "login failed user=alice" in l and "delay=0.4s" in l)

    def test_full_hashing_queue_answers_server_busy(self):
        """plugin_queue 1 and slow hashes: logins beyond the queue get 0x89 at once."""
        self.assertEqual(midge_passwd("-c", "-b", "-I", "1000000", self.pwfile, "alice", "a")[0], 0)
        self.start(["plugin_threads 1", "plugin_queue 1", "plugin_opt_max_failures 0",
                    "plugin_timeout 30"])
        clients = []
        for i in range(6):
            c = self.raw(version=5, connect=False)
            c.send(__import__("midgetest").connect_packet("busy-%d" % i, 5, username="alice",
                                                          password=b"wrong"))
            clients.append(c)
        codes = sorted(c.expect(CONNACK, timeout=30).rc for c in clients)
        self.assertIn(0x89, codes)
        self.assertIn(0x86, codes)
        self.broker.wait_log(lambda l: "reason=busy" in l)


@need_build
class MidgePasswdTest(unittest.TestCase):
    """The midge_passwd tool on its own, and its files read by a real mosquitto."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="mp-", dir=tmp_root())
        self.file = os.path.join(self.dir, "passwd")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def lines(self):
        with open(self.file) as f:
            return f.read().splitlines()

    def test_create_update_delete_mode_0600(self):
        """-c creates a 0600 file; updates replace the user's line in place and keep 0600."""
        self.assertEqual(midge_passwd("-c", "-b", self.file, "alice", "a1")[0], 0)
        self.assertEqual(stat.S_IMODE(os.stat(self.file).st_mode), 0o600)
        self.assertRegex(self.lines()[0], r"^alice:\$7\$210000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$")
        with open(self.file, "a") as f:
            f.write("# keep me\n")
        self.assertEqual(midge_passwd("-b", *FAST, self.file, "bob", "b1")[0], 0)
        first = self.lines()[0]
        self.assertEqual(midge_passwd("-b", *FAST, self.file, "alice", "a2")[0], 0)
        lines = self.lines()
        self.assertEqual([l.split(":")[0] for l in lines], ["alice", "# keep me", "bob"])
        self.assertNotEqual(lines[0], first)
        self.assertEqual(stat.S_IMODE(os.stat(self.file).st_mode), 0o600)
        self.assertEqual(midge_passwd("-D", self.file, "alice")[0], 0)
        self.assertEqual([l.split(":")[0] for l in self.lines()], ["# keep me", "bob"])
        # No temporary file is left behind.
        self.assertEqual(os.listdir(self.dir), ["passwd"])

    def test_hash_options(self):
        """-H sha512 / argon2id, -I iterations, -S 64-byte salts."""
        self.assertEqual(midge_passwd("-c", "-b", "-H", "sha512", self.file, "a", "p")[0], 0)
        self.assertEqual(midge_passwd("-b", "-H", "argon2id", self.file, "b", "p")[0], 0)
        self.assertEqual(midge_passwd("-b", "-I", "5000", self.file, "c", "p")[0], 0)
        self.assertEqual(midge_passwd("-b", "-S", "64", *FAST, self.file, "d", "p")[0], 0)
        l = self.lines()
        self.assertTrue(l[0].startswith("a:$6$"))
        self.assertTrue(l[1].startswith("b:$argon2id$v=19$m=19456,t=2,p=1$"))
        self.assertTrue(l[2].startswith("c:$7$5000$"))
        self.assertRegex(l[3], r"^d:\$7\$1000\$[A-Za-z0-9+/]{86}==\$")

    def test_errors_and_exit_codes(self):
        """Refusals: exit 1 (file unchanged) or 2 (usage), with a message saying why."""
        self.assertEqual(midge_passwd("-c", "-b", *FAST, self.file, "alice", "a1")[0], 0)
        before = open(self.file).read()
        cases = [
            (("-b", self.file, "ali:ce", "x"), 1, "user name contains ':'"),
            (("-b", self.file, "ali\x07ce", "x"), 1, "control character"),
            (("-b", self.file, "", "x"), 1, "user name is empty"),
            (("-b", self.file, "bob", ""), 1, "empty password"),
            (("-D", self.file, "nobody"), 1, "user nobody not found"),
            (("-b", os.path.join(self.dir, "none"), "bob", "x"), 1, "(use -c to create it)"),
            (("-H", "md5", "-b", self.file, "bob", "x"), 2, "unknown hash"),
            (("-I", "0", "-b", self.file, "bob", "x"), 2, "iterations"),
            (("-H", "sha512", "-I", "9", "-b", self.file, "bob", "x"), 2, "-I only applies"),
            (("-c", "-D", self.file, "bob"), 2, "cannot be combined"),
            (("-b", self.file, "bob"), 2, "wrong number of arguments"),
            (("-x",), 2, "--help"),
        ]
        for args, code, msg in cases:
            rc, out, err = midge_passwd(*args)
            self.assertEqual(rc, code, "%r: %s" % (args, err))
            self.assertIn(msg, err, args)
        self.assertEqual(open(self.file).read(), before)
        rc, out, err = midge_passwd("--help")
        self.assertEqual(rc, 0)
        for word in ("SYNOPSIS", "-c", "-b", "-D", "-U", "-H", "-I", "EXIT STATUS", "0600"):
            self.assertIn(word, out)

    def test_hash_plain_text_file_in_place(self):
        """-U hashes a plain-text file (as mosquitto_passwd -U); a hashed line is refused."""
        with open(self.file, "w") as f:
            f.write("# staff\nalice:pa:ss word\nbob:$weird\n")
        self.assertEqual(midge_passwd("-U", *FAST, self.file)[0], 0)
        l = self.lines()
        self.assertEqual(l[0], "# staff")
        self.assertTrue(l[1].startswith("alice:$7$1000$") and l[2].startswith("bob:$7$1000$"))
        before = open(self.file).read()
        rc, out, err = midge_passwd("-U", self.file)
        self.assertEqual(rc, 1)
        self.assertIn(":2: the password of 'alice' is already hashed", err)
        self.assertEqual(open(self.file).read(), before)

    def test_prompts_twice_without_echo(self):
        """Without -b: two prompts on the terminal, the password is not echoed."""
        def run(first, second):
            pid, fd = pty.fork()
            if pid == 0:
                os.execv(MIDGE_PASSWD, [MIDGE_PASSWD, "-c", *FAST, self.file, "tty-user"])
            out = b""
            def read_until(token):
                nonlocal out
                end = time.monotonic() + 20
                while token not in out:
                    r, _, _ = select.select([fd], [], [], max(0, end - time.monotonic()))
                    if not r:
                        raise AssertionError("no %r in %r" % (token, out))
                    try:
                        chunk = os.read(fd, 1024)
                    except OSError:
                        raise AssertionError("no %r in %r" % (token, out))
                    if not chunk:
                        raise AssertionError("no %r in %r" % (token, out))
                    out += chunk
            read_until(b"Password: ")
            os.write(fd, first + b"\n")
            read_until(b"Reenter password: ")
            os.write(fd, second + b"\n")
            try:
                while True:
                    r, _, _ = select.select([fd], [], [], 20)
                    chunk = os.read(fd, 1024) if r else b""
                    if not chunk:
                        break
                    out += chunk
            except OSError:
                pass
            _, status = os.waitpid(pid, 0)
            os.close(fd)
            return os.waitstatus_to_exitcode(status), out
        code, out = run(b"s3cr3t-typed", b"s3cr3t-typed")
        self.assertEqual(code, 0, out)
        self.assertNotIn(b"s3cr3t-typed", out)
        self.assertTrue(self.lines()[0].startswith("tty-user:$7$1000$"))
        code, out = run(b"one", b"two")
        self.assertEqual(code, 1)
        self.assertIn(b"passwords do not match", out)

    def test_no_terminal_without_b(self):
        """Without -b and without a terminal: a clear error, not a hang."""
        p = subprocess.run(["setsid", MIDGE_PASSWD, "-c", self.file, "u"], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no terminal", p.stderr)
        self.assertFalse(os.path.exists(self.file))

    def test_real_mosquitto_reads_midge_passwd_file(self):
        """mosquitto 2.0.11 accepts the $7$ (12-byte salt) and $6$ lines midge_passwd writes."""
        self.assertEqual(midge_passwd("-c", "-b", self.file, "alice", "a1")[0], 0)
        self.assertEqual(midge_passwd("-b", "-H", "sha512", self.file, "bob", "b1")[0], 0)
        sock = socket.socket()
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        sock.close()
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            # `user`: run as root, mosquitto would drop to user mosquitto, which cannot
            # enter our private temporary directory (ignored when not root).
            f.write("listener %d %s\nallow_anonymous false\npassword_file %s\n"
                    "persistence false\nlog_dest stderr\nuser %s\n"
                    % (port, HOST, self.file, pwd.getpwuid(os.geteuid()).pw_name))
        log = open(os.path.join(self.dir, "mosquitto.log"), "wb")
        p = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(p)
        def up():
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(up, timeout=10, what="mosquitto listening")
        self.assertEqual(mosquitto_pub(port, "alice", "a1")[0], 0)
        self.assertEqual(mosquitto_pub(port, "bob", "b1")[0], 0)
        rc, err = mosquitto_pub(port, "alice", "wrong")
        self.assertNotEqual(rc, 0)
