#!/usr/bin/env bash
# Builds the Debian package (scripts/package.sh) and installs it with a real `dpkg -i` into a
# throw-away root: an overlay of / (writes go to a tmpfs) in a private mount and network
# namespace, so the machine's own /usr, /etc and dpkg database are never touched. There:
#  - dpkg -i succeeds (its Depends are met by the real system), the files are where they belong;
#  - fwd check --config /etc/fwd/appliance.toml passes (ports eth1/eth2 exist in the namespace),
#    and a broken copy of it is refused with file:line:col;
#  - fwd from the package starts on those ports, answers fwd stats over /run/fwd/control.sock,
#    and stops cleanly on SIGTERM;
#  - the installed unit passes systemd-analyze verify; man fwd, fwd-conntrack and fwd.toml
#    render; the bash completion completes the subcommands;
#  - reinstalling (an upgrade) keeps an edited conffile; dpkg -r keeps the conffiles, --purge
#    removes them.
#   scripts/test-package.sh [--skip-build]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test-package.sh: needs root" >&2; exit 1; }
deb=$(realpath "$(scripts/package.sh "$@" | tail -1)")
[ -f "$deb" ] || { echo "FAIL: no package built" >&2; exit 1; }
echo "== package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb -c "$deb" > /tmp/fwd-test-package-list.$$
for f in ./usr/bin/fwd ./lib/systemd/system/fwd.service ./etc/fwd/appliance.toml \
         ./usr/share/man/man8/fwd.8 ./usr/share/man/man5/fwd.toml.5.gz \
         ./usr/share/bash-completion/completions/fwd ./usr/share/zsh/vendor-completions/_fwd \
         ./usr/share/fish/vendor_completions.d/fwd.fish; do
    grep -q " $f\(.gz\)\?\$" /tmp/fwd-test-package-list.$$ || {
        rm -f /tmp/fwd-test-package-list.$$; echo "FAIL: $f is not in the package" >&2; exit 1; }
done
rm -f /tmp/fwd-test-package-list.$$
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/fwd/appliance.toml || {
    echo "FAIL: /etc/fwd/appliance.toml is not a conffile" >&2; exit 1; }

work=$(mktemp -d /tmp/fwd-test-package.XXXXXX)
had_fwd=$([ -e /usr/bin/fwd ] && echo 1 || echo 0)
trap 'rm -rf "$work"' EXIT
cp "$deb" "$work/fwd.deb"
# Everything below runs in a private mount + network namespace: the overlay, the chroot and the
# veths vanish with it, also when a check fails.
unshare --mount --net --fork bash -euo pipefail -c '
work=$1/ns
mkdir "$work"
mount --make-rprivate /
mount -t tmpfs tmpfs "$work"
mkdir "$work/upper" "$work/ovl" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/ovl" "$work/root"
r=$work/root
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/tmp"
mount -t tmpfs tmpfs "$r/run"
inroot() { chroot "$r" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
cp "$2" "$r/tmp/fwd.deb"

echo "== dpkg -i"
inroot dpkg -i /tmp/fwd.deb
inroot dpkg -s fwd | grep -q "^Status: install ok installed" || fail "dpkg does not list fwd as installed"

echo "== fwd check --config /etc/fwd/appliance.toml"
ip link set lo up
ip link add eth1 type veth peer name peer1
ip link add eth2 type veth peer name peer2
for l in eth1 eth2 peer1 peer2; do ip link set "$l" up; done
inroot fwd check --config /etc/fwd/appliance.toml
# a broken copy: refused, naming the file, line and column
sed "s/^queues = 1/queues = \"one\"/" "$r/etc/fwd/appliance.toml" > "$r/tmp/broken.toml"
cp "$r/etc/fwd/appliance.rules.v4" "$r/etc/fwd/appliance.rules.v6" "$r/tmp/"
if err=$(inroot fwd check --config /tmp/broken.toml 2>&1); then fail "a broken config passed fwd check"; fi
grep -q "/tmp/broken.toml:[0-9]*:[0-9]*" <<<"$err" || fail "no file:line:col in: $err"
echo "ok: refused: $err"

echo "== fwd run from the package, fwd stats, SIGTERM"
mkdir -p "$r/run/fwd"     # what RuntimeDirectory=fwd creates
chroot "$r" fwd run --config /etc/fwd/appliance.toml > "$work/fwd.log" 2>&1 &
pid=$!
up=0
for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    if inroot fwd stats --config /etc/fwd/appliance.toml > "$work/stats.txt" 2>/dev/null; then up=1; break; fi
    sleep 0.1
done
[ "$up" = 1 ] || { cat "$work/fwd.log" >&2; fail "the packaged fwd did not answer fwd stats"; }
[ -S "$r/run/fwd/control.sock" ] || fail "no control socket at /run/fwd/control.sock"
[ -s "$work/stats.txt" ] || fail "fwd stats printed nothing"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 0 ] || { cat "$work/fwd.log" >&2; fail "fwd exited $rc on SIGTERM"; }
echo "ok: started, answered, stopped"

echo "== the installed unit, man pages, completions"
out=$(inroot systemd-analyze verify --man=no /lib/systemd/system/fwd.service 2>&1) || fail "verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify is not clean: $out"
for page in fwd fwd-conntrack fwd.toml; do
    inroot env MANWIDTH=80 man -P cat "$page" 2>/dev/null | grep -q "^NAME" || fail "man $page does not render"
done
inroot env MANWIDTH=80 man -P cat 5 fwd.toml | grep -q "ring_size" || fail "fwd.toml(5) lacks ring_size"
words=$(inroot bash -c "source /usr/share/bash-completion/completions/fwd
  COMP_WORDS=(fwd \"\"); COMP_CWORD=1; COMP_LINE=\"fwd \"; COMP_POINT=4
  _fwd fwd \"\" fwd; echo \"\${COMPREPLY[*]}\"")
for w in check reload conntrack stats; do grep -qw "$w" <<<"$words" || fail "bash completion lacks $w: $words"; done

echo "== upgrade keeps an edited conffile; remove keeps it, purge removes it"
echo "# edited by the operator" >> "$r/etc/fwd/appliance.toml"
inroot dpkg -i --force-confold /tmp/fwd.deb >/dev/null
grep -q "edited by the operator" "$r/etc/fwd/appliance.toml" || fail "reinstall replaced the edited conffile"
inroot dpkg -r fwd >/dev/null
[ ! -e "$r/usr/bin/fwd" ] || fail "dpkg -r left /usr/bin/fwd"
[ -e "$r/etc/fwd/appliance.toml" ] || fail "dpkg -r removed a conffile"
inroot dpkg --purge fwd >/dev/null
[ ! -e "$r/etc/fwd/appliance.toml" ] || fail "dpkg --purge left /etc/fwd/appliance.toml"
echo "package: all checks passed"
' bash "$work" "$work/fwd.deb"
[ "$had_fwd" = 1 ] || [ ! -e /usr/bin/fwd ] || {
    echo "FAIL: the test leaked /usr/bin/fwd onto the machine" >&2; exit 1; }
