# Sourced by proxy.sh: one hot customer against 1,000 cold ones and the bare route, at
# c=16 and c=64, all with one generator (scripts/bench.d/keyload.rs; oha sends a single
# key). Hot: every request the bench customer's. Cold: request i is customer i mod
# 1,000's, so each counter sees one request in a thousand.
KEYLOAD=$ROOT/target/release/examples/keyload
HOTCOLD_CONNS=${BENCH_HOTCOLD_CONNS:-16 64}
step "creating 1,000 cold customers on plan \"bench\" (each meters one request)"
python3 scripts/bench.d/customers.py create --url "$WORKER_URL" --token "$ADMIN_TOKEN" \
  --plan bench --prefix cold- --first 0 --count 1000 --keys-out "$WORK/cold.tsv" \
  --threads 8 --deadline-s 240 >"$WORK/cold.json" || die "creating the cold customers failed"
[ "$(jq .done "$WORK/cold.json")" = 1000 ] || die "cold customers: $(cat "$WORK/cold.json")"
cut -f2 "$WORK/cold.tsv" >"$WORK/cold.keys"
echo "${AUTH[metered]#Bearer }" >"$WORK/hot.keys"
: >"$WORK/bare.keys"
declare -A HC_URL=([bare]=${URL[bare]} [hot]=${URL[metered]} [cold]=${URL[metered]})
declare -A HC_KEYS=([bare]=$WORK/bare.keys [hot]=$WORK/hot.keys [cold]=$WORK/cold.keys)
declare -A HC_LABEL=([bare]="bare route" [hot]="one hot customer" [cold]="1,000 cold customers")
declare -A HC_RPS HC_P50 HC_P99 HC_FAILED
# In interleaved rounds (bare, hot, cold in each), as the proxy points: the targets are
# judged on the median of the rounds' own ratios, and the table shows each kind's round
# with the median req/s.
for c in $HOTCOLD_CONNS; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for kind in bare hot cold; do
      k=$kind/$c/$round
      step "hot and cold, $kind, c=$c, round $round of $ROUNDS: ${SECONDS_PER_POINT}s measured"
      : >"$WORK/hc-warm.json"
      if [ "$round" = 1 ]; then
        "$KEYLOAD" "${HC_URL[$kind]}" "${HC_KEYS[$kind]}" "$c" "$WARMUP" >"$WORK/hc-warm.json" ||
          die "keyload failed"
      fi
      "$KEYLOAD" "${HC_URL[$kind]}" "${HC_KEYS[$kind]}" "$c" "$SECONDS_PER_POINT" >"$WORK/hc.json" ||
        die "keyload failed"
      HC_RPS[$k]=$(jq .rps "$WORK/hc.json")
      HC_P50[$k]=$(jq .p50_us "$WORK/hc.json")
      HC_P99[$k]=$(jq .p99_us "$WORK/hc.json")
      HC_FAILED[$k]=$(jq .failed "$WORK/hc.json")
      if [ "$kind" = hot ]; then # the bench customer's: part of the metering check
        for f in "$WORK/hc-warm.json" "$WORK/hc.json"; do
          [ -s "$f" ] || continue
          SENT[metered]=$((${SENT[metered]} + $(jq '.requests - .failed' "$f")))
        done
      fi
      info "$(jq -c . "$WORK/hc.json")"
    done
  done
  for kind in bare hot cold; do # the median round's figures
    mid=$(for ((round = 1; round <= ROUNDS; round++)); do
      echo "${HC_RPS[$kind/$c/$round]} $round"
    done | sort -g | sed -n "$(((ROUNDS + 1) / 2))p")
    mid=${mid##* }
    for v in HC_RPS HC_P50 HC_P99 HC_FAILED; do
      declare -n hc_arr=$v
      hc_arr[$kind/$c]=${hc_arr[$kind/$c/$mid]}
    done
    unset -n hc_arr
  done
done

hotcold_report() {
  local c
  echo "### One hot customer against 1,000 cold ones"
  echo
  echo "Non-streamed chat with \`scripts/bench.d/keyload.rs\` (kept-alive connections, closed"
  echo "loop), ${SECONDS_PER_POINT} s per point after a ${WARMUP} s warm-up, in $ROUNDS interleaved rounds (each"
  echo "kind's round with the median req/s is shown). *Hot*: every request is the bench"
  echo "customer's. *Cold*: 1,000 customers (plan \`bench\`), request i is customer i mod 1,000's."
  echo
  echo "| c | target | req/s | p50 | p99 | failed |"
  echo "|---:|---|---:|---:|---:|---:|"
  for c in $HOTCOLD_CONNS; do
    for kind in bare hot cold; do
      echo "| $c | ${HC_LABEL[$kind]} | ${HC_RPS[$kind/$c]} | $(ms "${HC_P50[$kind/$c]}") | $(ms "${HC_P99[$kind/$c]}") | ${HC_FAILED[$kind/$c]} |"
    done
  done
  echo
}

hotcold_targets() {
  local c m rest over
  for c in $HOTCOLD_CONNS; do
    for over in cold bare; do
      read -r m rest < <(by_round HC_RPS "hot/$c" "$over/$c" ratio)
      local what="the req/s of 1,000 cold customers"
      [ "$over" = cold ] || what="the bare route's req/s"
      echo "| one hot customer ≥ 0.8× $what (c=$c) | ${m}× (median of the rounds' ratios: $rest) | $(awk -v m="$m" 'BEGIN { print (m >= 0.8) ? "**met**" : "**missed**" }') |"
    done
  done
}
