#!/bin/bash
# Redis memory (INFO memory's used_memory) around 1000 finished jobs of the queue across
# machines (issue 43): before any job, once all are done, and once the retention has
# passed and the owner's list has been read. Tiny jobs (64 px, 2 iterations, the tiny
# test weights) on two workers; a Redis of its own on PORT.
#
#   tools/redis_retention.sh BINARY RETENTION [PORT]    (RETENTION: e.g. 60s; "none" for
#                                                       a build without --retention)
set -u
bin=$1; keep=$2; port=${3:-16395}
cd "$(dirname "$0")/.."
W=crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors
dir=$(mktemp -d)
python3 -c "
import zlib,struct,sys
def chunk(t,d): b=t+d; return struct.pack('>I',len(d))+b+struct.pack('>I',zlib.crc32(b))
def png(k):
    raw=b''.join(b'\0'+bytes((x*9*k+y*5)%256 for x in range(96)) for y in range(32))
    return b'\x89PNG\r\n\x1a\n'+chunk(b'IHDR',struct.pack('>IIBBBBB',32,32,8,2,0,0,0))+chunk(b'IDAT',zlib.compress(raw))+chunk(b'IEND',b'')
open('$dir/c.png','wb').write(png(1)); open('$dir/s.png','wb').write(png(2))"
redis-server --port "$port" --save "" --appendonly no > /dev/null &
R=$!
sleep 0.5
mem() { redis-cli -p "$port" INFO memory | grep '^used_memory:' | cut -d: -f2 | tr -d '\r'; }
extra=()
[ "$keep" != none ] && extra=(--retention "$keep")
"$bin" serve -w $W --bind 127.0.0.1:18790 --queue "redis://127.0.0.1:$port" --store "$dir/store" \
  --max-queue 2000 --max-per-client 0 "${extra[@]}" 2> "$dir/serve.log" &
S=$!
for w in 1 2; do
  "$bin" worker -w $W --queue "redis://127.0.0.1:$port" --store "$dir/store" --name "w$w" --threads 1 2> "$dir/w$w.log" &
done
sleep 2
echo "before: $(mem) bytes"
for i in $(seq 1 1000); do
  curl -s -o /dev/null -H "X-Client-Token: retention-client-0001" \
    -F 'settings={"size":64,"iterations":2}' -F "content=@$dir/c.png" -F "style=@$dir/s.png" \
    http://127.0.0.1:18790/api/jobs
done
until [ "$(grep -c ': Done' "$dir"/w*.log | awk -F: '{s+=$2} END {print s}')" -ge 1000 ]; do sleep 1; done
echo "1000 jobs done: $(mem) bytes, $(redis-cli -p "$port" DBSIZE) keys"
if [ "$keep" != none ] && [ "$keep" != 0 ]; then
  sleep "${keep%s}"; sleep 2
  curl -s -o /dev/null -H "X-Client-Token: retention-client-0001" http://127.0.0.1:18790/api/jobs
  echo "after the retention: $(mem) bytes, $(redis-cli -p "$port" DBSIZE) keys"
fi
kill $S $(pgrep -f "$bin worker") $R 2>/dev/null
wait 2>/dev/null
rm -rf "$dir"
