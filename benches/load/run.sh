#!/usr/bin/env bash
# Load benchmark: sessiongate against nginx and HAProxy doing the same job
# (TLS termination, Set-Cookie hardening, upstream keep-alive, access log),
# and against the backend reached directly. See docs/BENCHMARKS.md.
#
#   benches/load/run.sh            # about 7 minutes; stops itself within DEADLINE s
#
# Knobs (environment): DURATION (s per load run, 10), ROUNDS (3), CONNS (50),
# H2_STREAMS (streams per h2 connection, 10), BIG_DURATION (s, 3), BIG_CONNS (4),
# PROXY_CPU (0), LOAD_CPU (1), SESSIONGATE_BIN (default: cargo build --release,
# then target/release/sessiongate), KEEP_TMP=1 (keep configs, logs and raw
# outputs), DEADLINE (s, 600), ONLY (space-separated subset of: direct nginx
# haproxy floor sg-harden sg-vault; the default leaves out floor), PERF
# (targets, also named in ONLY, to profile with `perf record` in an extra,
# unrecorded HTTP/1.1 and HTTP/2 run each after the rounds; implies
# KEEP_TMP=1; reports in the work dir, e.g. PERF=sg-harden ROUNDS=1),
# CALLGRIND (targets to run under valgrind's callgrind instead of the timed
# rounds: user-space instructions per request, the same every run, over
# CG_REQUESTS (20000) requests on CG_CONNS (10) connections with h2load, for
# HTTP/1.1 and HTTP/2; e.g. CALLGRIND="nginx haproxy sg-harden sg-vault";
# CG_OPTS adds valgrind options, e.g. CG_OPTS=--cache-sim=yes also reports
# simulated cache misses per request).
# The extra target `floor` (only when named in ONLY or CALLGRIND) is
# examples/floor_proxy.rs: the gateway's own parts (runtime, rustls, hyper
# with the gateway's settings, HTTP/2 write coalescing, upstream pool,
# allocator) passing requests through with no policy and no log, i.e. what
# the required crates alone cost; it does not harden cookies.
#
# It only ever stops processes it started itself, by PID.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
H2_STREAMS=${H2_STREAMS:-10}
BIG_DURATION=${BIG_DURATION:-3}
BIG_CONNS=${BIG_CONNS:-4}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
DEADLINE=${DEADLINE:-600}
ONLY=${ONLY:-direct nginx haproxy sg-harden sg-vault}
PERF=${PERF:-}
[[ -z $PERF ]] || KEEP_TMP=1
CALLGRIND=${CALLGRIND:-}
CG_REQUESTS=${CG_REQUESTS:-20000}
CG_CONNS=${CG_CONNS:-10}
CG_OPTS=${CG_OPTS:-}
if [[ -n $CALLGRIND ]]; then
    ONLY=$CALLGRIND
    ROUNDS=0
    KEEP_TMP=1
fi
# Every proxy negotiates TLS 1.3 with this suite: wrk and openssl s_client
# (OpenSSL's default list) put it first, h2load is told to use it, nginx and
# HAProxy accept only it, and sessiongate (rustls) follows the client's order.
CIPHER=TLS_AES_256_GCM_SHA384

STARTED=$(date +%s)
log() { printf '[%4ds] %s\n' $(($(date +%s) - STARTED)) "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=()        # every long-running process this script started
LOAD_PID=""    # the load generator currently running, if any
PERF_PIDS=""   # perf record and perf stat, while profiling
WATCHDOG=""
T=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $LOAD_PID ]] && kill -TERM "$LOAD_PID" 2>/dev/null || true
    [[ -n $PERF_PIDS ]] && kill -INT $PERF_PIDS 2>/dev/null || true
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    [[ -n $WATCHDOG ]] && kill -TERM "$WATCHDOG" 2>/dev/null || true
    if [[ -n $T && -d $T ]]; then
        if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $T"; else rm -rf "$T"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'log "deadline of ${DEADLINE}s reached, stopping"; exit 124' TERM

# The whole run, install and build included, ends within DEADLINE seconds.
(
    sleep "$DEADLINE" & s=$!
    trap 'kill $s 2>/dev/null; exit 0' TERM
    wait $s && kill -TERM $$
) &
WATCHDOG=$!

# ---------------------------------------------------------------- tools
SUDO=""
[[ $(id -u) == 0 ]] || SUDO=sudo
need=()
tools="nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client openssl:openssl curl:curl taskset:util-linux ss:iproute2"
[[ -z $PERF ]] || tools+=" perf:linux-perf"
[[ -z $CALLGRIND ]] || tools+=" valgrind:valgrind callgrind_control:valgrind"
for tool in $tools; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if ((${#need[@]})); then
    log "installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"   # nginx and haproxy live in /usr/sbin

if [[ -z ${SESSIONGATE_BIN:-} ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
    SESSIONGATE_BIN=$ROOT/target/release/sessiongate
fi
if [[ " $ONLY " == *" floor "* && -z ${FLOOR_BIN:-} ]]; then
    log "cargo build --release --example floor_proxy"
    (cd "$ROOT" && cargo build --release --quiet --example floor_proxy)
    FLOOR_BIN=$ROOT/target/release/examples/floor_proxy
fi
[[ " $ONLY " != *" floor "* || -x $FLOOR_BIN ]] || die "no floor_proxy binary at $FLOOR_BIN"
[[ -x $SESSIONGATE_BIN ]] || die "no sessiongate binary at $SESSIONGATE_BIN"
CLK_TCK=$(getconf CLK_TCK)
(($(nproc) >= 2)) || log "warning: fewer than 2 CPUs; proxy and load generator share one"

T=$(mktemp -d /tmp/sessiongate-load.XXXXXX)
log "work dir $T"

# ---------------------------------------------------------------- certificates
# A throwaway CA and an ECDSA P-256 server certificate for localhost.
(
    cd "$T"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=sessiongate load-bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -out ca.crt 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key 2>/dev/null
    openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -sha256 \
        -extfile server.ext -out server.crt 2>/dev/null
    cat server.crt server.key > server.pem
    chmod 600 ca.key server.key server.pem
)
# nginx workers run as an unprivileged user and must reach big.bin.
chmod 755 "$T"

# ---------------------------------------------------------------- helpers
USED_PORTS=" "
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))   # below the ephemeral range (32768-)
        [[ $USED_PORTS == *" $p "* ]] && continue
        ss -Htln "sport = :$p" | grep -q . && continue
        USED_PORTS+="$p "
        echo "$p"
        return
    done
}

wait_port() {   # wait_port PORT PID NAME
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited at start; see its log in $T (KEEP_TMP=1)"
        sleep 0.1
    done
    die "$3 does not listen on $1"
}

render() {   # render TEMPLATE OUT [PORT]
    sed -e "s|@TMP@|$T|g" -e "s|@PORT@|${3:-}|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@BACKEND_H2C_PORT@|$BACKEND_H2C_PORT|g" -e "s|@CIPHER@|$CIPHER|g" \
        -e "s|@PHPSESSID@|$PHPSESSID|g" -e "s|@BODY@|$BODY|g" "$1" > "$2"
}

# The process and its children (nginx: master and worker).
tree_pids() {
    local p=$1
    echo "$p"
    cat /proc/"$p"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true
}

cpu_ticks() {   # "utime+stime stime" of the processes, in clock ticks
    local sum=0 sys=0 p rest
    for p in "$@"; do
        rest=$(sed 's/^.*) //' /proc/"$p"/stat 2>/dev/null) || continue
        set -- $rest
        sum=$((sum + ${12} + ${13}))   # fields 14 and 15 of stat
        sys=$((sys + ${13}))
    done
    echo "$sum $sys"
}

# ---------------------------------------------------------------- backend
BACKEND_PORT=$(free_port)
BACKEND_H2C_PORT=$(free_port)
PHPSESSID=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
BODY=$(head -c 2000 /dev/urandom | base64 -w0 | tr -dc 'a-zA-Z0-9' | head -c 1024)
head -c 1048576 /dev/urandom > "$T/big.bin"
chmod 644 "$T/big.bin"
mkdir -p "$T/backend-body" "$T/nginx-body" "$T/nginx-proxy-temp"
render "$HERE/backend.conf" "$T/backend.conf"
taskset -c "$LOAD_CPU" nginx -p "$T" -e "$T/backend-error.log" -c "$T/backend.conf" \
    -g 'daemon off;' > "$T/backend.out" 2>&1 &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
wait_port "$BACKEND_PORT" "$BACKEND_PID" "backend nginx"
wait_port "$BACKEND_H2C_PORT" "$BACKEND_PID" "backend nginx (h2c)"
BACKEND_PIDS=$(tree_pids "$BACKEND_PID")
log "backend nginx on 127.0.0.1:$BACKEND_PORT (h2c :$BACKEND_H2C_PORT), pids $(echo $BACKEND_PIDS)"

# ---------------------------------------------------------------- proxies
declare -A PORT PID
start_proxy() {   # start_proxy NAME: taskset to PROXY_CPU, one worker/thread
    local name=$1 port vg=() nginx_g='daemon off;'
    port=$(free_port)
    PORT[$name]=$port
    if [[ " $CALLGRIND " == *" $name "* ]]; then
        vg=(valgrind --tool=callgrind $CG_OPTS --callgrind-out-file="$T/callgrind-$name.out")
        nginx_g='daemon off; master_process off;'   # one process, the one valgrind runs
    fi
    case $name in
    nginx)
        render "$HERE/nginx-proxy.conf" "$T/nginx-proxy.conf" "$port"
        taskset -c "$PROXY_CPU" "${vg[@]}" nginx -p "$T" -e "$T/nginx-proxy-error.log" \
            -c "$T/nginx-proxy.conf" -g "$nginx_g" > "$T/nginx-proxy.out" 2>&1 &
        ;;
    haproxy)
        render "$HERE/haproxy.cfg" "$T/haproxy.cfg" "$port"
        taskset -c "$PROXY_CPU" "${vg[@]}" haproxy -db -f "$T/haproxy.cfg" > "$T/haproxy-access.log" 2> "$T/haproxy.err" &
        ;;
    sg-harden | sg-vault)
        render "$HERE/sessiongate-${name#sg-}.toml" "$T/$name.toml" "$port"
        "$SESSIONGATE_BIN" check --config "$T/$name.toml" > "$T/$name.check" 2>&1 ||
            die "sessiongate check: $(cat "$T/$name.check")"
        # `[listen] workers = 1` in the config: one thread serves, as for
        # the peers (tokio's single-threaded runtime).
        taskset -c "$PROXY_CPU" "${vg[@]}" "$SESSIONGATE_BIN" run \
            --config "$T/$name.toml" > "$T/$name-access.log" 2>&1 &
        ;;
    floor)
        render "$HERE/sessiongate-harden.toml" "$T/floor.toml" "$port"
        taskset -c "$PROXY_CPU" "${vg[@]}" "$FLOOR_BIN" "$T/floor.toml" > "$T/floor.out" 2>&1 &
        ;;
    *) die "unknown target $name" ;;
    esac
    PID[$name]=$!
    PIDS+=("${PID[$name]}")
    wait_port "$port" "${PID[$name]}" "$name"
    log "$name on 127.0.0.1:$port, pid ${PID[$name]}, threads $(awk '/^Threads/{print $2}' /proc/${PID[$name]}/status), CPUs $(taskset -pc ${PID[$name]} | sed 's/.*: //')"
}

TARGETS=()
for t in $ONLY; do
    TARGETS+=("$t")
    [[ $t == direct ]] || start_proxy "$t"
done

# ---------------------------------------------------------------- checks
# Same TLS version and suite everywhere; each proxy really hardens the cookies.
CURL=(curl -sS --max-time 5 --cacert "$T/ca.crt")
check_tls() {   # check_tls NAME PORT
    local name=$1 port=$2 out proto cipher alpn kx
    out=$(openssl s_client -connect "127.0.0.1:$port" -servername localhost -CAfile "$T/ca.crt" \
        -alpn h2,http/1.1 </dev/null 2>/dev/null | tr -d '\0') || true
    proto=$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is .*/\1/p' <<<"$out" | head -1)
    cipher=$(sed -n 's/^New, TLSv[0-9.]*, Cipher is \(.*\)/\1/p' <<<"$out" | head -1)
    kx=$(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$out" | head -1)
    alpn=$(sed -n 's/^ALPN protocol: //p' <<<"$out" | head -1)
    local h1 h2
    h1=$("${CURL[@]}" -v --http1.1 -o /dev/null "https://localhost:$port/" 2>&1 |
        sed -n 's/.*SSL connection using \(.*\)$/\1/p' | head -1)
    h2=$(h2load -n 1 -c 1 --tls13-ciphers="$CIPHER" "https://localhost:$port/" 2>&1 |
        sed -n 's/^Cipher: //p; s/^Application protocol: /ALPN /p' | tr '\n' ' ')
    printf '  %-10s s_client: %s %s %s ALPN %s | curl: %s | h2load: %s\n' \
        "$name" "$proto" "$cipher" "$kx" "${alpn:-none}" "$h1" "$h2"
    [[ $proto == TLSv1.3 && $cipher == "$CIPHER" && $alpn == h2 ]] ||
        die "$name negotiates $proto $cipher ALPN $alpn, not TLSv1.3 $CIPHER h2"
    [[ $h1 == *"TLSv1.3 / $CIPHER"* ]] || die "$name: curl negotiated $h1"
    [[ $h2 == *"$CIPHER"*"ALPN h2"* ]] || die "$name: h2load negotiated $h2"
}

check_cookies() {   # check_cookies NAME PORT [COOKIE]: prints the Set-Cookie lines
    local name=$1 port=$2 headers c n=0
    headers=$("${CURL[@]}" -D - -o /dev/null ${3:+-H "Cookie: $3"} "https://localhost:$port/" | tr -d '\r')
    grep -q '^HTTP/[0-9.]* 200' <<<"$headers" || die "$name: $(head -1 <<<"$headers")"
    while IFS= read -r c; do
        [[ -n $c ]] || continue
        n=$((n + 1))
        printf '  %-10s %s\n' "$name" "$c"
        grep -qi '; *secure\b' <<<"$c" || die "$name: no Secure in: $c"
        grep -qi '; *httponly\b' <<<"$c" || die "$name: no HttpOnly in: $c"
        grep -qi '; *samesite=\(lax\|strict\)' <<<"$c" || die "$name: no SameSite in: $c"
    done < <(grep -i '^set-cookie:' <<<"$headers")
    echo "$headers" > "$T/$name.headers"
    SETCOOKIES=$n
}

log "TLS as negotiated (the same OpenSSL client list as wrk's; h2load limited to $CIPHER):"
for t in "${TARGETS[@]}"; do [[ $t == direct ]] || check_tls "$t" "${PORT[$t]}"; done

log "Set-Cookie as the client sees it (each must carry Secure, HttpOnly, SameSite):"
VAULT_COOKIE=""
for t in "${TARGETS[@]}"; do
    case $t in
    direct) ;;
    floor) printf '  %-10s (passes Set-Cookie unchanged: the floor, not a contender)\n' "$t" ;;
    sg-vault)
        # First request: the backend sets PHPSESSID, the gateway vaults it
        # and hands out __Host-sg. The load then presents that token, so the
        # run measures session lookups, not session creation.
        check_cookies "$t" "${PORT[$t]}"
        grep -qi '^set-cookie: *PHPSESSID' "$T/$t.headers" && die "sg-vault sent PHPSESSID to the client"
        token=$(sed -n 's/^[Ss]et-[Cc]ookie: *__Host-sg=\([^;]*\).*/\1/p' "$T/$t.headers" | head -1)
        [[ -n $token ]] || die "sg-vault: no __Host-sg token"
        VAULT_COOKIE="__Host-sg=$token"
        check_cookies "$t" "${PORT[$t]}" "$VAULT_COOKIE"
        grep -qi '^set-cookie: *PHPSESSID' "$T/$t.headers" && die "sg-vault sent PHPSESSID to the client"
        grep -qi '^set-cookie: *__Host-sg=' "$T/$t.headers" && die "sg-vault did not recognise its token"
        printf '  %-10s PHPSESSID never reaches the client; the token is reused without a new session\n' "$t"
        ;;
    *)
        check_cookies "$t" "${PORT[$t]}"
        ((SETCOOKIES == 2)) || die "$t: $SETCOOKIES Set-Cookie lines, expected 2"
        ;;
    esac
done

# ---------------------------------------------------------------- load
RESULTS=$T/results.tsv
: > "$RESULTS"

pids_of() {   # the processes whose CPU time is the server's
    case $1 in
    direct) echo $BACKEND_PIDS ;;
    *) tree_pids "${PID[$1]}" ;;
    esac
}

url_of() {   # url_of TARGET PROTO PATH
    case $1:$2 in
    direct:h1) echo "http://127.0.0.1:$BACKEND_PORT$3" ;;
    direct:h2) echo "http://127.0.0.1:$BACKEND_H2C_PORT$3" ;;
    *) echo "https://localhost:${PORT[$1]}$3" ;;
    esac
}

# The direct rows measure the backend as the server under test: it moves to
# the proxy's CPU for them, and back to the load generator's CPU afterwards.
pin_backend() { local p; for p in $BACKEND_PIDS; do taskset -pc "$1" "$p" >/dev/null; done; }

run_load() {   # run_load TARGET PROTO(h1|h2|big) ROUND (ROUND "perf": profile, record nothing)
    local target=$1 proto=$2 round=$3 out=$T/$1-$2-$3.out hdr=() pids t0 t1 line
    [[ $target == sg-vault ]] && hdr=(-H "Cookie: $VAULT_COOKIE")
    pids=$(pids_of "$target")
    [[ $target == direct ]] && pin_backend "$PROXY_CPU"
    if [[ $round == perf ]]; then
        # Samples with call graphs, and syscall / context-switch counts.
        perf record -F 1999 -g -o "$T/perf-$target-$proto.data" -p "$(echo $pids | tr ' ' ',')" \
            > "$T/perf-$target-$proto.err" 2>&1 &
        PERF_PIDS=$!
        perf stat -x, -o "$T/perf-$target-$proto.stat" -p "$(echo $pids | tr ' ' ',')" \
            -e raw_syscalls:sys_enter,sched:sched_wakeup,context-switches,page-faults \
            -e "$(printf 'syscalls:sys_enter_%s,' read readv recvfrom write writev sendto sendmsg \
                epoll_wait epoll_ctl futex setsockopt accept4 connect close madvise mmap munmap brk | sed 's/,$//')" \
            > /dev/null 2>&1 &
        PERF_PIDS+=" $!"
        sleep 0.5
    fi
    read -r t0 s0 < <(cpu_ticks $pids)
    case $proto in
    h1)
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$HERE/wrk-report.lua" \
            "${hdr[@]}" "$(url_of "$target" h1 /)" > "$out" 2>&1 &
        ;;
    big)
        taskset -c "$LOAD_CPU" wrk -t1 -c"$BIG_CONNS" -d"${BIG_DURATION}s" -s "$HERE/wrk-report.lua" \
            "${hdr[@]}" "$(url_of "$target" h1 /big)" > "$out" 2>&1 &
        ;;
    h2)
        taskset -c "$LOAD_CPU" h2load -t1 -c"$CONNS" -m"$H2_STREAMS" -D"$DURATION" \
            --tls13-ciphers="$CIPHER" --log-file="$out.log" \
            "${hdr[@]}" "$(url_of "$target" h2 /)" > "$out" 2>&1 &
        ;;
    esac
    LOAD_PID=$!
    wait "$LOAD_PID" || die "$target $proto: load generator failed: $(tail -3 "$out")"
    LOAD_PID=""
    read -r t1 s1 < <(cpu_ticks $pids)
    [[ $target == direct ]] && pin_backend "$LOAD_CPU"
    if [[ -n $PERF_PIDS ]]; then
        kill -INT $PERF_PIDS 2>/dev/null || true
        wait $PERF_PIDS || true
        PERF_PIDS=""
    fi

    local req secs p50 p99 errs bytes
    if [[ $proto == h2 ]]; then
        req=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$out")
        secs=$(sed -n 's/^finished in \([0-9.]*\)s.*/\1/p' "$out")
        errs=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1 \2 \3/p' "$out" |
            awk '{print $1+$2+$3}')
        local non2xx
        non2xx=$(sed -n 's/^status codes: [0-9]* 2xx, \([0-9]*\) 3xx, \([0-9]*\) 4xx, \([0-9]*\) 5xx.*/\1 \2 \3/p' "$out" |
            awk '{print $1+$2+$3}')
        errs=$((errs + non2xx))
        bytes=0
        # Per-request log: start (us since epoch), status, duration (us).
        read -r p50 p99 < <(cut -f3 "$out.log" | sort -n |
            awk '{v[NR]=$1} END {if (NR) print v[int((NR-1)*0.50)+1], v[int((NR-1)*0.99)+1]; else print 0, 0}')
        rm -f "$out.log"
    else
        line=$(grep '^RESULT ' "$out") || die "$target $proto: no result: $(tail -3 "$out")"
        eval "local ${line#RESULT }"
        req=$requests
        secs=$(awk -v d="$duration_us" 'BEGIN {printf "%.3f", d / 1e6}')
        p50=$p50_us p99=$p99_us
        errs=$((errors + status_errors))
    fi
    [[ -n $req && $req -gt 0 ]] || die "$target $proto: no completed request: $(tail -3 "$out")"
    if [[ $round == perf ]]; then
        local base=$T/perf-$target-$proto
        perf report -i "$base.data" --no-children --sort dso,symbol --percent-limit 0.3 --stdio -g none \
            2>/dev/null | grep -v '^#' | grep . | sed -E 's/ +- +- *$//; s/ +$//' > "$base.txt" || true
        perf report -i "$base.data" --no-children --sort dso --stdio -g none \
            2>/dev/null | grep -v '^#' | grep . | sed -E 's/ +- +- *$//; s/ +$//' > "$base.dso.txt" || true
        {
            printf '%s %s: %d requests, %.2f us CPU/request; per request:' "$target" "$proto" "$req" \
                "$(awk -v c=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$req" 'BEGIN {print c / hz * 1e6 / n}')"
            awk -F, -v n="$req" '$3 != "" && $1 ~ /^[0-9]/ && $1 > 0 {
                e = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", e); sub(/^sched:sched_/, "", e)
                printf " %s %.2f", (e == "" ? "syscalls" : e), $1 / n }' "$base.stat"
            echo
            echo "CPU by object: $(awk '{printf "%s %s  ", $2, $1}' "$base.dso.txt")"
            head -25 "$base.txt"
        } > "$base.summary"
        log "profile (perf, under load; perf itself adds overhead):"
        cat "$base.summary" >&2
        rm -f "$out.log"
        sleep 1
        return
    fi
    ((errs == 0)) || log "warning: $target $proto round $round: $errs failed requests"
    awk -v t="$target" -v p="$proto" -v r="$round" -v n="$req" -v s="$secs" -v a="$p50" -v b="$p99" \
        -v c=$((t1 - t0)) -v k=$((s1 - s0)) -v hz="$CLK_TCK" -v by="${bytes:-0}" -v e="$errs" 'BEGIN {
        printf "%s\t%s\t%d\t%d\t%.1f\t%d\t%d\t%.2f\t%.1f\t%d\t%.2f\n", t, p, r, n, n / s, a, b,
            c / hz * 1e6 / n, by / 1048576 / s, e, k / hz * 1e6 / n }' >> "$RESULTS"
    tail -1 "$RESULTS" | awk -F'\t' '{
        if ($2 == "big") printf "  %-9s %-3s round %d: %8.1f MiB/s  cpu %8.1f us/req\n", $1, $2, $3, $9, $8
        else printf "  %-9s %-3s round %d: %8.0f req/s  p50 %6d us  p99 %6d us  cpu %6.2f us/req (kernel %.2f)\n", $1, $2, $3, $5, $6, $7, $8, $11
    }' >&2
    sleep 1
}

# Fit the rounds into what is left of DEADLINE (a cold cargo build takes ~3 min here).
per_round=$((${#TARGETS[@]} * (2 * (DURATION + 2) + BIG_DURATION + 2)))
left=$((DEADLINE - ($(date +%s) - STARTED) - 20))
if ((ROUNDS > 0 && ROUNDS * per_round > left)); then
    fit=$((left / per_round))
    ((fit >= 1)) || fit=1
    log "warning: $ROUNDS rounds need ~$((ROUNDS * per_round)) s, $left s left before the deadline: running $fit"
    ROUNDS=$fit
fi
log "load: $ROUNDS rounds x ${#TARGETS[@]} targets; wrk -c$CONNS ${DURATION}s (HTTP/1.1), h2load -c$CONNS -m$H2_STREAMS ${DURATION}s (HTTP/2), wrk -c$BIG_CONNS ${BIG_DURATION}s on /big"
n=${#TARGETS[@]}
for ((round = 1; round <= ROUNDS; round++)); do
    # Interleaved: the targets take turns on one protocol before the next,
    # so the runs a ratio compares are seconds apart, not minutes (the
    # machine's load drifts); each round starts with a different target.
    for proto in h1 h2 big; do
        for ((i = 0; i < n; i++)); do
            run_load "${TARGETS[$(((i + round - 1) % n))]}" "$proto" "$round"
        done
    done
done

for t in $PERF; do
    run_load "$t" h1 perf
    run_load "$t" h2 perf
done

# Instructions per request under callgrind: counters zeroed after a warm-up,
# dumped after exactly CG_REQUESTS requests (connection set-up included).
count_dumps() { local f n=0; for f in "$T/callgrind-$1.out".*; do [[ -e $f ]] && n=$((n + 1)); done; echo $n; }
if [[ -n $CALLGRIND ]]; then
    CG=$T/callgrind.tsv
    : > "$CG"
    for t in $CALLGRIND; do
        for proto in h1 h2; do
            hdr=()
            [[ $t == sg-vault ]] && hdr=(-H "Cookie: $VAULT_COOKIE")
            flags=(-c"$CG_CONNS" -m10)
            [[ $proto == h1 ]] && flags=(--h1 -c"$CG_CONNS")
            url=https://localhost:${PORT[$t]}/
            h2load -n 200 "${flags[@]}" --tls13-ciphers="$CIPHER" "${hdr[@]}" "$url" > /dev/null 2>&1
            before=$(count_dumps "$t")
            callgrind_control -z "${PID[$t]}" > /dev/null 2>&1
            taskset -c "$LOAD_CPU" h2load -n "$CG_REQUESTS" "${flags[@]}" --tls13-ciphers="$CIPHER" \
                "${hdr[@]}" "$url" > "$T/callgrind-$t-$proto.h2load" 2>&1 &
            LOAD_PID=$!
            wait "$LOAD_PID" || die "$t $proto: h2load failed under callgrind"
            LOAD_PID=""
            ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$T/callgrind-$t-$proto.h2load")
            [[ $ok == "$CG_REQUESTS" ]] || die "$t $proto: $ok of $CG_REQUESTS requests succeeded under callgrind"
            callgrind_control -d "${PID[$t]}" > /dev/null 2>&1
            for _ in $(seq 100); do
                (($(count_dumps "$t") > before)) && break
                sleep 0.1
            done
            for dump in "$T/callgrind-$t.out".*; do mv "$dump" "$T/callgrind-$t-$proto.out"; done
            read -r ir _ < <(sed -n 's/^summary: //p' "$T/callgrind-$t-$proto.out")
            printf '%s\t%s\t%s\n' "$t" "$proto" "$ir" >> "$CG"
            if [[ $CG_OPTS == *cache-sim=yes* ]]; then
                # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
                sed -n 's/^summary: //p' "$T/callgrind-$t-$proto.out" | awk -v t="$t" -v p="$proto" -v n="$CG_REQUESTS" \
                    '{ printf "%s %s per request: %.0f data reads+writes, %.0f L1d misses, %.0f last-level misses (data), %.0f L1i misses\n", t, p, ($2 + $3) / n, ($5 + $6) / n, ($8 + $9) / n, $4 / n }' \
                    >> "$T/callgrind-cache.txt"
            fi
            # Self cost; lines sharing one count are a thread's root frames, not work.
            callgrind_annotate --threshold=100 --inclusive=no "$T/callgrind-$t-$proto.out" 2>/dev/null |
                sed -n '/file:function/,$p' | sed 1,2d | grep -v '^ *$' |
                sed -E 's|^( *[0-9,]+ \( *[0-9.]+%\))  [^:]*:|\1  |' |
                awk '{ n[NR] = $1; l[NR] = $0; c[$1]++ } END { for (i = 1; i <= NR; i++) if (c[n[i]] < 3) print l[i] }' |
                head -30 > "$T/callgrind-$t-$proto.txt" || true
            log "$t $proto under callgrind: $(awk -v ir="$ir" -v n="$CG_REQUESTS" 'BEGIN {printf "%.0f", ir / n}') instructions/request; top (self):"
            head -12 "$T/callgrind-$t-$proto.txt" | cut -c1-160 >&2 || true
        done
    done
    echo
    echo "user-space instructions per request under callgrind ($CG_REQUESTS requests, $CG_CONNS connections, h2load; HTTP/2 with -m10):"
    awk -F'\t' -v n="$CG_REQUESTS" '{ ir[$1 SUBSEP $2] = $3 / n; if (!seen[$1]++) order[++k] = $1 }
    END {
        printf "%-10s %12s %12s %10s %10s %12s %12s\n", "server", "h1 Ir/req", "h2 Ir/req", "h1/nginx", "h2/nginx", "h1/haproxy", "h2/haproxy"
        for (i = 1; i <= k; i++) { t = order[i]; a = ir[t SUBSEP "h1"]; b = ir[t SUBSEP "h2"]
            na = ir["nginx" SUBSEP "h1"]; nb = ir["nginx" SUBSEP "h2"]; ha = ir["haproxy" SUBSEP "h1"]; hb = ir["haproxy" SUBSEP "h2"]
            printf "%-10s %12.0f %12.0f %10s %10s %12s %12s\n", t, a, b,
                na ? sprintf("%.2f", a / na) : "-", nb ? sprintf("%.2f", b / nb) : "-",
                ha ? sprintf("%.2f", a / ha) : "-", hb ? sprintf("%.2f", b / hb) : "-" } }' "$CG"
    [[ ! -e $T/callgrind-cache.txt ]] || { echo; echo "simulated caches (valgrind's model of this CPU's, not measured):"; cat "$T/callgrind-cache.txt"; }
    exit 0
fi

# ---------------------------------------------------------------- table
cp "$RESULTS" "$T/results-final.tsv"
{
echo
echo "sessiongate load benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), TLSv1.3 $CIPHER"
echo "proxy on CPU $PROXY_CPU (one worker/thread), load generator and backend on CPU $LOAD_CPU; medians of $ROUNDS rounds"
echo "spread = (max - min) / median of req/s; cpu = server utime+stime / completed requests, kernel = its stime part"
echo "x direct, x nginx = req/s ratio; cpu/nginx, cpu/haproxy = CPU-per-request ratio"
awk -F'\t' -v order="$ONLY" '
function sortn(a, k,   i, j, v) { for (i = 2; i <= k; i++) { v = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > v; j--) a[j + 1] = a[j]; a[j + 1] = v } }
function median(s,   a, k, m) { k = split(s, a, " "); sortn(a, k); m = int((k + 1) / 2); return (k % 2) ? a[m] : (a[m] + a[m + 1]) / 2 }
function minmax(s,   a, k, i, lo, hi) { k = split(s, a, " "); lo = hi = a[1]; for (i = 2; i <= k; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }; return hi - lo }
function r(a, b) { return (b > 0) ? sprintf("%.2f", a / b) : "-" }
{ cr[$1 SUBSEP $2 SUBSEP $3] = $8; if ($3 > nr) nr = $3 }
{ k = $1 SUBSEP $2; rps[k] = rps[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7; cpu[k] = cpu[k] " " $8; mib[k] = mib[k] " " $9; err[k] += $10; ker[k] = ker[k] " " $11 }
END {
    nt = split(order, ts, " ")
    for (pi = 1; pi <= 2; pi++) {
        p = (pi == 1) ? "h1" : "h2"
        printf "\n%s\n", (p == "h1") ? "HTTP/1.1 keep-alive (wrk), GET / (1 KiB, 2 Set-Cookie)" : "HTTP/2 (h2load), GET / (1 KiB, 2 Set-Cookie)"
        printf "%-10s %9s %7s %8s %8s %9s %7s %8s %8s %9s %11s %6s\n", "server", "req/s", "spread", "p50 ms", "p99 ms", "cpu us/req", "kernel", "x direct", "x nginx", "cpu/nginx", "cpu/haproxy", "errors"
        for (i = 1; i <= nt; i++) {
            t = ts[i]; k = t SUBSEP p
            if (!(k in rps)) continue
            m = median(rps[k]); c = median(cpu[k])
            md = ((("direct" SUBSEP p) in rps)) ? median(rps["direct" SUBSEP p]) : 0
            mn = ((("nginx" SUBSEP p) in rps)) ? median(rps["nginx" SUBSEP p]) : 0
            cn = ((("nginx" SUBSEP p) in cpu)) ? median(cpu["nginx" SUBSEP p]) : 0
            ch = ((("haproxy" SUBSEP p) in cpu)) ? median(cpu["haproxy" SUBSEP p]) : 0
            printf "%-10s %9.0f %6.1f%% %8.2f %8.2f %10.2f %7.2f %8s %8s %9s %11s %6d\n", t, m, 100 * minmax(rps[k]) / m,
                median(p50[k]) / 1000, median(p99[k]) / 1000, c, median(ker[k]), r(m, md), r(m, mn), r(c, cn), r(c, ch), err[k]
        }
    }
    # Paired: each round runs the targets seconds apart, so a ratio within a
    # round is less exposed to the machine load drifting between rounds.
    printf "\nCPU per request against the peer in the same round: median [min-max] of the %d per-round ratios\n", nr
    printf "%-10s %17s %17s %17s %17s\n", "server", "h1/nginx", "h1/haproxy", "h2/nginx", "h2/haproxy"
    for (i = 1; i <= nt; i++) {
        t = ts[i]
        if (t == "nginx" || t == "haproxy" || t == "direct") continue
        line = sprintf("%-10s", t)
        for (pi = 1; pi <= 2; pi++) {
            p = (pi == 1) ? "h1" : "h2"
            for (qi = 1; qi <= 2; qi++) {
                q = (qi == 1) ? "nginx" : "haproxy"
                s = ""; lo = 1e9; hi = 0
                for (rd = 1; rd <= nr; rd++) {
                    a = cr[t SUBSEP p SUBSEP rd]; b = cr[q SUBSEP p SUBSEP rd]
                    if (a > 0 && b > 0) { x = a / b; s = s " " x; if (x < lo) lo = x; if (x > hi) hi = x }
                }
                line = line sprintf(" %17s", (s == "") ? "-" : sprintf("%.2f [%.2f-%.2f]", median(s), lo, hi))
            }
        }
        print line
    }
    printf "\n/big (1 MiB, HTTP/1.1, wrk -c'"$BIG_CONNS"')\n"
    printf "%-10s %9s %7s %10s %8s %8s %6s\n", "server", "MiB/s", "spread", "cpu us/MiB", "x direct", "x nginx", "errors"
    for (i = 1; i <= nt; i++) {
        t = ts[i]; k = t SUBSEP "big"
        if (!(k in mib)) continue
        m = median(mib[k])
        md = ((("direct" SUBSEP "big") in mib)) ? median(mib["direct" SUBSEP "big"]) : 0
        mn = ((("nginx" SUBSEP "big") in mib)) ? median(mib["nginx" SUBSEP "big"]) : 0
        printf "%-10s %9.1f %6.1f%% %10.1f %8s %8s %6d\n", t, m, 100 * minmax(mib[k]) / m, median(cpu[k]), r(m, md), r(m, mn), err[k]
    }
}' "$RESULTS"
echo
echo "raw rows (server proto round requests req/s p50_us p99_us cpu_us/req MiB/s errors kernel_us/req):"
cat "$RESULTS"
} | tee "${OUT:-/dev/null}"
log "done in $(($(date +%s) - STARTED)) s"
