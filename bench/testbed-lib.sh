# Shared by bench/rfc2544.sh and bench/scale.sh (sourced, not run): the netns testbed of
# scripts/testbed.sh with a device under test between client and server, trafgen as the
# generator, and trials that count what left the client (C0 tx_packets) against what reached
# the server (S0 rx_packets). The caller sets: prefix, work (a temp dir), FWD (the binary).
# DUTs: fwd (AF_XDP, this repo), testpmd (dpdk-testpmd io over two net_af_xdp vdevs, the
# no-firewall poll-mode baseline; one queue on veth), bridge (a Linux bridge in the fw netns).

tb_C() { echo "${prefix}client"; }
tb_F() { echo "${prefix}fw"; }
tb_S() { echo "${prefix}server"; }
dut_pid=""
gen_pid=""

tb_require() {
    local missing=()
    for t in trafgen ping ethtool ip; do command -v "$t" >/dev/null || missing+=("$t"); done
    if [ "${1:-}" = testpmd ]; then command -v dpdk-testpmd >/dev/null || missing+=(dpdk-testpmd); fi
    if ((${#missing[@]})); then
        echo "missing: ${missing[*]} (scripts/install-deps.sh --bench installs them)" >&2
        exit 1
    fi
}

tb_up() {
    scripts/testbed.sh up --queues "$1" --prefix "$prefix"
    # the server must not answer every UDP frame with a port unreachable
    ip netns exec "$(tb_S)" sysctl -qw net.ipv4.icmp_ratelimit=1000000
}

tb_cleanup() {
    for p in $gen_pid $dut_pid; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in $gen_pid $dut_pid; do kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true; done
    scripts/testbed.sh down --prefix "$prefix"
    rm -rf "$work"
}

# trafgen config of one UDP frame 198.18.0.1:9 -> 198.18.0.2:9 of SIZE bytes with FCS (64..1518).
tb_gen_cfg() {
    local size=$1 out=$2
    local smac cmac
    smac=$(ip -n "$(tb_S)" -br link show S0 | awk '{print $3}')
    cmac=$(ip -n "$(tb_C)" -br link show C0 | awk '{print $3}')
    hex() { echo "$1" | sed 's/^/0x/; s/:/, 0x/g'; }
    local ip_len=$((size - 4 - 14)) pay=$((size - 4 - 42))
    cat > "$out" <<CFG
{
  $(hex "$smac"), $(hex "$cmac"), c16(0x0800),
  0x45, 0x00, c16($ip_len), c16(1), c16(0x4000), 64, 17, csumip(14, 33),
  198, 18, 0, 1, 198, 18, 0, 2,
  c16(9), c16(9), c16($((ip_len - 20))), c16(0),
  fill(0x00, $pay)
}
CFG
}

tb_tx() { ip netns exec "$(tb_C)" cat /sys/class/net/C0/statistics/tx_packets; }
tb_rx() { ip netns exec "$(tb_S)" cat /sys/class/net/S0/statistics/rx_packets; }

# Starts the generator: CFG, RATE (pps; 0 = as fast as it goes), PROCS (trafgen forks, one per
# CPU 0..PROCS-1: each sends on its own veth queue).
tb_gen_start() {
    local cfg=$1 rate=$2 procs=${3:-1} ratearg=()
    [ "$rate" != 0 ] && ratearg=(-b "$((rate / procs))pps")
    setsid ip netns exec "$(tb_C)" trafgen -Q --no-sock-mem -P "$procs" -C "${ratearg[@]}" \
        -i "$cfg" -o C0 >/dev/null 2>&1 &
    gen_pid=$!
}
tb_gen_stop() {
    [ -n "$gen_pid" ] || return 0
    # SIGINT is trafgen's stop; its forked senders have been seen to ignore it while spinning
    # on a full ring, so the whole group is killed after 2 s rather than waited for forever
    kill -INT -- "-$gen_pid" 2>/dev/null || true
    for _ in $(seq 20); do
        kill -0 -- "-$gen_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$gen_pid" 2>/dev/null || true
    wait "$gen_pid" 2>/dev/null || true
    gen_pid=""
}

# One trial: prints "offered_pps delivered_pps loss_ppm" over DURATION seconds at RATE.
tb_trial() {
    local cfg=$1 rate=$2 duration=$3 procs=${4:-1}
    tb_gen_start "$cfg" "$rate" "$procs"
    sleep 0.5
    local t0 r0 t1 r1
    t0=$(tb_tx); r0=$(tb_rx)
    sleep "$duration"
    # stop the generator, let the frames in flight land, then count both ends
    tb_gen_stop
    sleep 0.3
    t1=$(tb_tx); r1=$(tb_rx)
    awk -v t=$((t1 - t0)) -v r=$((r1 - r0)) -v d="$duration" 'BEGIN {
        loss = (t > 0 && t > r) ? (t - r) * 1000000 / t : 0
        printf "%d %d %d\n", t / d, r / d, loss }'
}

# Round-trip latency percentiles through the DUT (both directions cross it) while CFG runs at
# RATE: 300 pings 5 ms apart; prints "p50_us p90_us p99_us" (or "0 0 0" when none came back).
tb_latency() {
    local cfg=$1 rate=$2
    tb_gen_start "$cfg" "$rate" 1
    sleep 0.3
    ip netns exec "$(tb_C)" ping -n -i 0.005 -c 300 -W 1 198.18.0.2 2>/dev/null \
        | sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | sort -n > "$work/rtt.txt" || true
    tb_gen_stop
    awk 'function at(q,   i) { i = int(NR * q + 0.5); if (i < 1) i = 1; if (i > NR) i = NR; return a[i] }
         { a[NR] = $1 * 1000 }
         END { if (NR == 0) print "0 0 0"; else printf "%d %d %d\n", at(0.50), at(0.90), at(0.99) }' "$work/rtt.txt"
}

# fwd with WORKERS workers on the last WORKERS cores, QUEUES queues per port, busy polling.
dut_fwd_start() {
    local workers=$1 queues=$2 ncpu cores
    ncpu=$(nproc)
    if [ "$workers" -ge "$ncpu" ]; then
        cores=$(seq -s, 0 $((ncpu - 1)))
    else
        cores=$(seq -s, $((ncpu - workers)) $((ncpu - 1)))
    fi
    cat > "$work/fwd.toml" <<TOML
[ports.a]
interface = "fw-c"
mode = "copy"
queues = $queues
[ports.b]
interface = "fw-s"
mode = "copy"
queues = $queues
[workers]
cores = [$cores]
idle_sleep_us = 0
[stats]
listen = "127.0.0.1:9900"
log_interval_s = 0
[control]
socket = "$work/ctl.sock"
[log]
level = "warn"
TOML
    ip netns exec "$(tb_F)" "$FWD" --config "$work/fwd.toml" 2>"$work/fwd.log" &
    dut_pid=$!
    for _ in $(seq 100); do
        "$FWD" stats --socket "$work/ctl.sock" >/dev/null 2>&1 && return 0
        kill -0 "$dut_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$work/fwd.log" >&2
    echo "fwd did not start" >&2
    exit 1
}

dut_testpmd_start() {
    local ncpu lcores
    ncpu=$(nproc)
    lcores=$([ "$ncpu" -ge 2 ] && echo "$((ncpu - 2)),$((ncpu - 1))" || echo 0)
    # testpmd runs until enter is pressed: its stdin is a fifo that we hold open and never write
    [ -p "$work/testpmd.in" ] || mkfifo "$work/testpmd.in"
    exec 7<>"$work/testpmd.in"
    setsid ip netns exec "$(tb_F)" stdbuf -oL dpdk-testpmd -l "$lcores" --no-huge -m 512 \
        --no-pci --file-prefix "fwdbench$$" --log-level=3 \
        --vdev net_af_xdp0,iface=fw-c --vdev net_af_xdp1,iface=fw-s \
        -- --forward-mode=io --auto-start --total-num-mbufs=16384 \
        <"$work/testpmd.in" >"$work/testpmd.log" 2>&1 &
    dut_pid=$!
    for _ in $(seq 300); do
        grep -q "Press enter to exit" "$work/testpmd.log" 2>/dev/null && return 0
        sleep 0.1
    done
    cat "$work/testpmd.log" >&2
    echo "testpmd did not start" >&2
    exit 1
}

dut_bridge_start() {
    ip -n "$(tb_F)" link add br0 type bridge
    ip -n "$(tb_F)" link set fw-c master br0
    ip -n "$(tb_F)" link set fw-s master br0
    ip -n "$(tb_F)" link set br0 up
    sleep 1
}

dut_start() {
    case "$1" in
        fwd) dut_fwd_start "${2:-1}" "${3:-1}" ;;
        testpmd) dut_testpmd_start ;;
        bridge) dut_bridge_start ;;
    esac
}

dut_stop() {
    case "$1" in
        bridge) ip -n "$(tb_F)" link del br0 2>/dev/null || true ;;
        *)
            if [ -n "$dut_pid" ]; then
                kill -TERM -- "-$dut_pid" 2>/dev/null || kill -TERM "$dut_pid" 2>/dev/null || true
                for _ in $(seq 50); do kill -0 "$dut_pid" 2>/dev/null || break; sleep 0.1; done
                kill -KILL -- "-$dut_pid" 2>/dev/null || kill -KILL "$dut_pid" 2>/dev/null || true
                wait "$dut_pid" 2>/dev/null || true
            fi
            dut_pid=""
            # testpmd's libxdp program must not outlive it (fwd refuses to replace a program)
            ip -n "$(tb_F)" link set dev fw-c xdp off 2>/dev/null || true
            ip -n "$(tb_F)" link set dev fw-s xdp off 2>/dev/null || true
            sleep 0.3
            ;;
    esac
}
