#!/bin/bash
# The worker's peak RSS while a checkpoint of about 1 GB goes to the store (issue 43):
# one 640x640 job of `batch --queue` with an L-BFGS history of 100, checkpointed at
# iteration 100, on a Redis of its own and a store folder under /tmp.
#
#   tools/checkpoint_upload_rss.sh NAME [PORT]
#
# runs /tmp/ns-NAME as the worker (copy the build to measure there first) and
# /tmp/ns-new as the batch command; needs /tmp/ckphoto.png (640x640) and
# /tmp/ckstyle.png, and redis-server and /usr/bin/time.
set -u
b=$1
W=/work/main/crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors
port=${2:-16390}
rm -rf /tmp/ck-$b; mkdir -p /tmp/ck-$b/photos; cp /tmp/ckphoto.png /tmp/ck-$b/photos/p.png
redis-server --port $port --save "" --appendonly no > /dev/null &
R=$!
sleep 0.5
/usr/bin/time -o /tmp/ck-$b/time.txt -f "$b worker peak RSS: %M KB" /tmp/ns-$b worker -w $W --queue redis://127.0.0.1:$port --store /tmp/ck-$b/store --name m --lease 60 --checkpoint-every 100 --checkpoint-seconds 0 --threads 2 2> /tmp/ck-$b/worker.log &
sleep 1
( max=0; while sleep 0.3; do s=$(du -sb /tmp/ck-$b/store/checkpoints 2>/dev/null | cut -f1); [ -n "$s" ] && [ "$s" -gt "$max" ] && max=$s && echo $max > /tmp/ck-$b/ckmax; done ) &
M=$!
/tmp/ns-new batch -c /tmp/ck-$b/photos -s /tmp/ckstyle.png -w $W --size 640 --no-coarse-to-fine -n 140 --lbfgs-history 100 -o /tmp/ck-$b/out --queue redis://127.0.0.1:$port --store /tmp/ck-$b/store 2>&1 | tail -1
kill $M
kill -TERM $(pgrep -f "^/tmp/ns-$b worker")
sleep 2
cat /tmp/ck-$b/time.txt; echo "largest checkpoint in the store: $(cat /tmp/ck-$b/ckmax 2>/dev/null) bytes"
kill $R
