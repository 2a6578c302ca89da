# Where the metered path's time goes, sourced by scripts/bench.d/proxy.sh after its
# measurements: the Worker is built again with its function names kept, served alone
# by a fresh workerd with V8's inspector on, and its isolate sampled (V8's CPU
# profiler) under the same non-streamed load at c=$PROFILE_C, once metered and once on
# the bare route. scripts/profile.d/report.mjs prints, per function, the samples per
# request the metered path adds. The profiles themselves are kept under target/profile/
# (Chrome DevTools opens them).
PROFILE_N=${BENCH_PROFILE_N:-20000}
PROFILE_C=${BENCH_PROFILE_C:-16}
PROFILE_DIR=$ROOT/target/profile
PROFILE_MD=""
profile_run() {
  local dir=$WORK/profile js wasm port inspector key
  names_build "$dir" || return 1
  js=$NAMES_JS wasm=$NAMES_WASM
  rm -rf "$dir/do" && mkdir -p "$dir/do" "$PROFILE_DIR"
  port=$(free_port $((WORKER_PORT + 10))) || return 1
  inspector=$(free_port $((port + 1))) || return 1
  python3 scripts/bench.d/workerd_config.py --wrangler wrangler.toml \
    --js "${js#./}" --wasm "${wasm#./}" --instance "$port:$dir/do" \
    --var "UPSTREAM_URL=$UPSTREAM_URL" --var "ADMIN_TOKEN=$ADMIN_TOKEN" --var "KEY_SECRET=$ADMIN_TOKEN-keys" \
    --var BENCH_BARE_ROUTE=1 --var-file CATALOG=catalog.json >"$dir/config.capnp" || return 1
  "$WORKERD" serve "$dir/config.capnp" --experimental \
    --inspector-addr="127.0.0.1:$inspector" >"$dir/workerd.log" 2>&1 &
  WORKERD_PID=$!
  profile_worker_up "http://127.0.0.1:$port" "$dir/workerd.log" || return 1
  key=$(live_key "http://127.0.0.1:$port" bench bench)
  local ws="ws://127.0.0.1:$inspector/worker0" t url auth
  for t in metered bare; do
    url=http://127.0.0.1:$port/v1/chat/completions auth=(-H "authorization: Bearer $key")
    [ "$t" = metered ] || url=http://127.0.0.1:$port/bare/v1/chat/completions auth=()
    step "profile: $t, $PROFILE_N requests at c=$PROFILE_C"
    oha -n 2000 -c "$PROFILE_C" --no-tui -m POST "${auth[@]}" -H 'content-type: application/json' \
      -d "$CHAT_BODY" "$url" >/dev/null # warm-up: the code tiered up before sampling
    node scripts/profile.d/sample.mjs "$ws" "$PROFILE_DIR/$t.cpuprofile" \
      oha -n "$PROFILE_N" -c "$PROFILE_C" --no-tui -m POST "${auth[@]}" \
      -H 'content-type: application/json' -d "$CHAT_BODY" "$url" >/dev/null || return 1
  done
  stop "$WORKERD_PID"
  WORKERD_PID=""
  PROFILE_MD=$(node scripts/profile.d/report.mjs "$PROFILE_DIR/metered.cpuprofile" \
    "$PROFILE_DIR/bare.cpuprofile" "$PROFILE_N" "$dir/dist/${js#./}") || return 1
  info "wrote $PROFILE_DIR/metered.cpuprofile and bare.cpuprofile"
}
# A failed profile is reported, not fatal: the measurements above stand without it.
profile_run || {
  stop "$WORKERD_PID"
  WORKERD_PID=""
  PROFILE_MD="The profile could not be taken in this run (see scripts/bench.d/profile.sh)."
}

profile_report() {
  echo "### Where the time goes"
  echo
  echo "V8's CPU profiler sampled the Worker's isolate (JavaScript, the wasm and the"
  echo "runtime's built-ins it calls; not workerd's own C++ outside them) through"
  echo "workerd's inspector, $PROFILE_N non-streamed requests at c=$PROFILE_C each, on a"
  echo "build with function names kept (\`scripts/bench.d/profile.sh\`). Samples are"
  echo "counts, comparable between the two targets, not times. Per function, its own"
  echo "samples per request (self time), largest additions first:"
  echo
  echo "$PROFILE_MD"
  echo
  echo "The profiles are in \`target/profile/\` (open them in Chrome DevTools)."
  echo
}
