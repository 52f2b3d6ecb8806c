#!/usr/bin/env bash
# CI check of the Debian package.
#
#   packaging/check-deb.sh [PATH.deb]   # without an argument: build one with
#                                       # packaging/build-deb.sh first
#
# Checks, each failure counted and reported, exit 1 if any:
#  1. `dpkg-deb -c`: every expected path is in the package, with its mode and
#     root:root ownership (binary 0755, env 0600, unit under
#     /usr/lib/systemd/system or /lib/systemd/system, ...); control fields;
#     conffiles; maintainer scripts are valid sh.
#  2. `dpkg-deb -x` into a temporary root: the binary runs (`--version`
#     matches the package version) and `check-config` accepts the shipped
#     /etc/appliance/appliance.toml; the man page and completions are real.
#  3. `dpkg --root` install into a second temporary root (maintainer scripts
#     run "chrootless" with DPKG_ROOT set, touching nothing outside it): the
#     `appliance` user is created, the unit is NOT enabled, a reinstall keeps
#     a locally edited conffile and the env file's 0600, remove keeps the
#     conffiles, purge removes them. The host's /etc/passwd is compared
#     before and after.
#  4. `systemd-analyze verify` on the unit (ExecStart pointed at the
#     extracted binary; Documentation=man: resolved in the extracted man
#     pages): any diagnostic about the unit fails. Then
#     `systemd-analyze security --offline` must rate it at most 2.0 (exposure,
#     0 = locked down, 10 = unprotected). Skipped, with a message, where
#     systemd-analyze is not installed.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
deb="${1:-}"
if [ -z "$deb" ]; then
	deb="$("$root/packaging/build-deb.sh" | tail -n 1)" || { echo "FAIL: build-deb.sh failed" >&2; exit 1; }
fi
[ -f "$deb" ] || { echo "FAIL: no such .deb: $deb" >&2; exit 1; }
deb="$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
checks=0
ok()   { checks=$((checks + 1)); echo "ok: $*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL: $*" >&2; }
check() { # check DESCRIPTION COMMAND...: ok when the command succeeds
	local what="$1"; shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else fail "$what"; fi
}

echo "== checking $deb"

# ---- 1. contents and modes (dpkg-deb -c) -----------------------------------
dpkg-deb -c "$deb" > "$tmp/contents" || { echo "FAIL: dpkg-deb -c failed" >&2; exit 1; }
# "MODE OWNER PATH" per entry, e.g. "-rwxr-xr-x 0/0 ./usr/bin/appliance"
# (cargo-deb writes numeric owners, dpkg-deb -b names: root/root is 0/0).
awk '{o = $2; if (o == "root/root") o = "0/0"; print $1, o, $6}' "$tmp/contents" > "$tmp/entries"
expect() { # expect MODE PATH [PATH...]: one of the paths is in the package with MODE, owned by root
	local mode="$1"; shift
	local p
	for p in "$@"; do
		if grep -qx -- "$mode 0/0 ./$p" "$tmp/entries"; then ok "$p $mode root:root"; return; fi
	done
	fail "expected $* with mode $mode owned 0/0; the package has: $(grep -E " \./($(IFS='|'; echo "$*"))\$" "$tmp/entries" || echo nothing)"
}
expect -rwxr-xr-x usr/bin/appliance
expect -rw-r--r-- etc/appliance/appliance.toml
expect -rw------- etc/appliance/env
expect -rw-r--r-- usr/lib/systemd/system/appliance.service lib/systemd/system/appliance.service
expect -rw-r--r-- usr/lib/sysusers.d/appliance.conf
expect -rw-r--r-- usr/share/doc/appliance/config.example.toml
expect -rw-r--r-- usr/share/doc/appliance/README.md
expect -rw-r--r-- usr/share/doc/appliance/BENCHMARKS.md
expect -rw-r--r-- usr/share/doc/appliance/INSTALL.md
expect -rw-r--r-- usr/share/doc/appliance/copyright
expect -rw-r--r-- usr/share/man/man1/appliance.1.gz
expect -rw-r--r-- usr/share/bash-completion/completions/appliance
expect -rw-r--r-- usr/share/zsh/vendor-completions/_appliance
expect -rw-r--r-- usr/share/fish/vendor_completions.d/appliance.fish
# Nothing under a home, /tmp, /usr/local or /var (the database is the
# service's StateDirectory, created by systemd, never shipped).
if grep -E ' \./(home|root|tmp|usr/local|var)/' "$tmp/entries" >/dev/null; then
	fail "unexpected paths: $(grep -E ' \./(home|root|tmp|usr/local|var)/' "$tmp/entries" | tr '\n' ' ')"
else
	ok "no files under /home, /root, /tmp, /usr/local, /var"
fi

# ---- control: fields, conffiles, maintainer scripts -----------------------
mkdir -p "$tmp/control"
dpkg-deb -e "$deb" "$tmp/control"
field() { dpkg-deb -f "$deb" "$1"; }
check "Package: appliance" test "$(field Package)" = appliance
check "Section: net" test "$(field Section)" = net
check "Priority: optional" test "$(field Priority)" = optional
check "Depends names libc6 (from \$auto)" grep -q 'libc6' <<<"$(field Depends)"
check "Depends provides systemd-sysusers" grep -q 'systemd-sysusers' <<<"$(field Depends)"
check "Depends names procps (/bin/kill for ExecReload)" grep -q 'procps' <<<"$(field Depends)"
for f in /etc/appliance/appliance.toml /etc/appliance/env; do
	check "conffile $f" grep -qx "$f" "$tmp/control/conffiles"
done
for s in postinst prerm postrm; do
	if [ -f "$tmp/control/$s" ]; then
		check "$s is valid sh" sh -n "$tmp/control/$s"
		check "$s has no leftover #DEBHELPER#" bash -c "! grep -q '#DEBHELPER#' '$tmp/control/$s'"
		check "$s uses set -e" grep -qx 'set -e' "$tmp/control/$s"
	else
		fail "maintainer script $s missing"
	fi
done
# The generated snippets: user creation, no enabling, no start on install,
# try-restart on upgrade only.
check "postinst creates the user (systemd-sysusers)" grep -q 'systemd-sysusers .*appliance.conf' "$tmp/control/postinst"
check "postinst does not enable the unit on install" bash -c "! grep -q 'deb-systemd-helper enable appliance.service >/dev/null || true\$' '$tmp/control/postinst' || grep -q 'was-enabled' '$tmp/control/postinst'"
check "postinst never starts the unit on install" bash -c "! grep -Eq 'deb-systemd-invoke (start|restart) ' '$tmp/control/postinst'"
check "postinst try-restarts on upgrade" grep -q 'deb-systemd-invoke try-restart appliance.service' "$tmp/control/postinst"

# ---- 2. extracted root: the binary and the shipped config ------------------
x="$tmp/x"
mkdir -p "$x"
dpkg-deb -x "$deb" "$x"
version="$(field Version)"
upstream="${version%-*}"
if out="$("$x/usr/bin/appliance" --version 2>&1)" && [ "$out" = "appliance $upstream" ]; then
	ok "usr/bin/appliance --version: $out"
else
	fail "usr/bin/appliance --version printed '$out', expected 'appliance $upstream'"
fi
# check-config exactly as the service reads it; no env, no secrets needed.
if out="$(cd "$tmp" && env -i PATH=/usr/bin:/bin "$x/usr/bin/appliance" check-config --config "$x/etc/appliance/appliance.toml" 2>&1)"; then
	ok "check-config accepts etc/appliance/appliance.toml"
	for want in "listen: 127.0.0.1:8080" "database: /var/lib/appliance/appliance.db" "providers: 0"; do
		check "check-config reports '$want'" grep -qF "$want" <<<"$out"
	done
else
	fail "check-config rejected etc/appliance/appliance.toml: $out"
fi
check "the shipped config uses JSON logs" grep -qx 'format = "json"' "$x/etc/appliance/appliance.toml"
check "the full example parses too" bash -c "cd '$tmp' && env -i PATH=/usr/bin:/bin '$x/usr/bin/appliance' check-config --config '$x/usr/share/doc/appliance/config.example.toml'"
check "env file holds no active assignment" bash -c "! grep -Ev '^[[:space:]]*(#|\$)' '$x/etc/appliance/env'"
check "man page is roff for appliance(1)" bash -c "zcat '$x/usr/share/man/man1/appliance.1.gz' | grep -q '^\.TH appliance 1'"
check "bash completion defines _appliance" grep -q '_appliance()' "$x/usr/share/bash-completion/completions/appliance"
check "zsh completion is a #compdef" grep -q '^#compdef appliance' "$x/usr/share/zsh/vendor-completions/_appliance"
check "fish completion completes appliance" grep -q '^complete -c appliance' "$x/usr/share/fish/vendor_completions.d/appliance.fish"
unit=/dev/null
for u in "$x/usr/lib/systemd/system/appliance.service" "$x/lib/systemd/system/appliance.service"; do
	if [ -f "$u" ]; then unit="$u"; break; fi
done
# The directives the service relies on, and the hardening it promises.
# shellcheck disable=SC2016 # $MAINPID is literal unit text
for kv in 'Type=notify' 'NotifyAccess=main' 'WatchdogSec=30s' \
	'ExecStart=/usr/bin/appliance serve --config /etc/appliance/appliance.toml' \
	'ExecReload=/bin/kill -HUP $MAINPID' 'EnvironmentFile=-/etc/appliance/env' \
	'User=appliance' 'StateDirectory=appliance' 'LogsDirectory=appliance' \
	'ConfigurationDirectory=appliance' 'Restart=on-failure' 'RestartSec=2s' \
	'TimeoutStopSec=45s' 'LimitNOFILE=65536' 'UMask=0077' \
	'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'NoNewPrivileges=yes' \
	'PrivateDevices=yes' 'ProtectKernelTunables=yes' 'ProtectKernelModules=yes' \
	'ProtectKernelLogs=yes' 'ProtectControlGroups=yes' \
	'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'RestrictNamespaces=yes' \
	'LockPersonality=yes' 'MemoryDenyWriteExecute=yes' 'SystemCallArchitectures=native' \
	'SystemCallFilter=@system-service' 'CapabilityBoundingSet=' \
	'WantedBy=multi-user.target'; do
	check "unit: $kv" grep -qxF -- "$kv" "$unit"
done

# ---- 3. dpkg --root install / reinstall / remove / purge -------------------
if command -v dpkg >/dev/null; then
	r="$tmp/root"
	mkdir -p "$r/var/lib/dpkg/info" "$r/var/lib/dpkg/updates" "$r/var/lib/dpkg/triggers"
	: > "$r/var/lib/dpkg/status"
	host_passwd="$(md5sum < /etc/passwd)"
	# Scripts run on the host with DPKG_ROOT="$r" (systemd-sysusers --root,
	# deb-systemd-helper honour it); the dependencies are not in that empty
	# database, hence --force-depends.
	rdpkg() { dpkg --root="$r" --log="$tmp/dpkg.log" --force-script-chrootless --force-depends \
		--force-confold "$@" </dev/null > "$tmp/dpkg.out" 2>&1; }
	if [ "$(id -u)" != 0 ]; then
		echo "skipped: dpkg --root install (needs root)"
	elif ! command -v systemd-sysusers >/dev/null; then
		echo "skipped: dpkg --root install (systemd-sysusers not available for the postinst)"
	elif rdpkg -i "$deb"; then
		ok "dpkg --root install"
		check "install created the appliance user" grep -q '^appliance:x:[0-9]*:[0-9]*:.*:/var/lib/appliance:/usr/sbin/nologin$' "$r/etc/passwd"
		check "install created the appliance group" grep -q '^appliance:x:' "$r/etc/group"
		check "install did not enable the unit" test ! -e "$r/etc/systemd/system/multi-user.target.wants/appliance.service"
		check "installed env file is 0600" test "$(stat -c %a "$r/etc/appliance/env")" = 600
		# A local edit survives a reinstall/upgrade (conffile), and so does 0600.
		echo '# local edit' >> "$r/etc/appliance/appliance.toml"
		echo 'STRIPE_WEBHOOK_SECRET=whsec_test' >> "$r/etc/appliance/env"
		if rdpkg -i "$deb"; then
			ok "dpkg --root reinstall (upgrade path)"
			check "reinstall kept the edited appliance.toml" grep -qx '# local edit' "$r/etc/appliance/appliance.toml"
			check "reinstall kept the edited env" grep -qx 'STRIPE_WEBHOOK_SECRET=whsec_test' "$r/etc/appliance/env"
			check "env file still 0600" test "$(stat -c %a "$r/etc/appliance/env")" = 600
		else
			fail "dpkg --root reinstall: $(cat "$tmp/dpkg.out")"
		fi
		if rdpkg -r appliance; then
			ok "dpkg --root remove"
			check "remove deleted the binary" test ! -e "$r/usr/bin/appliance"
			check "remove kept the conffiles" test -f "$r/etc/appliance/appliance.toml"
		else
			fail "dpkg --root remove: $(cat "$tmp/dpkg.out")"
		fi
		if rdpkg -P appliance; then
			ok "dpkg --root purge"
			check "purge deleted the conffiles" test ! -e "$r/etc/appliance/appliance.toml" -a ! -e "$r/etc/appliance/env"
		else
			fail "dpkg --root purge: $(cat "$tmp/dpkg.out")"
		fi
	else
		fail "dpkg --root install: $(cat "$tmp/dpkg.out")"
	fi
	check "host /etc/passwd untouched" test "$(md5sum < /etc/passwd)" = "$host_passwd"
else
	echo "skipped: dpkg --root install (dpkg not available)"
fi

# ---- 4. systemd-analyze verify / security ----------------------------------
if [ "$unit" = /dev/null ]; then
	fail "systemd-analyze: no unit file to verify"
elif command -v systemd-analyze >/dev/null; then
	v="$tmp/verify"
	mkdir -p "$v"
	# Same unit, but the binary is the extracted one (verify checks that
	# ExecStart is executable).
	sed "s#^ExecStart=/usr/bin/appliance #ExecStart=$x/usr/bin/appliance #" "$unit" > "$v/appliance.service"
	if command -v man >/dev/null; then
		# Documentation=man:appliance(1) must resolve: to the packaged page.
		verify_out="$(MANPATH="$x/usr/share/man" systemd-analyze verify "$v/appliance.service" 2>&1)"
	else
		verify_out="$(systemd-analyze verify --man=no "$v/appliance.service" 2>&1)"
	fi
	verify_rc=$?
	[ -n "$verify_out" ] && printf '%s\n' "$verify_out" | sed 's/^/  systemd-analyze: /'
	# verify exits 0 on unknown keys and unparsable values: any line about
	# our unit counts as a failure.
	if [ "$verify_rc" -eq 0 ] && ! grep -q 'appliance' <<<"$verify_out"; then
		ok "systemd-analyze verify ($(systemd-analyze --version | head -n 1))"
	else
		fail "systemd-analyze verify (exit $verify_rc)"
	fi
	if sec_out="$(systemd-analyze security --offline=yes --threshold=20 "$v/appliance.service" 2>&1)"; then
		ok "systemd-analyze security: $(grep -o 'Overall exposure level.*' <<<"$sec_out")"
	else
		printf '%s\n' "$sec_out" | grep -E '✗|Overall' | sed 's/^/  /'
		fail "systemd-analyze security: exposure above 2.0 (it was 1.6)"
	fi
else
	echo "skipped: systemd-analyze not available (apt-get install systemd to run the unit checks)"
fi

echo "$((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]
