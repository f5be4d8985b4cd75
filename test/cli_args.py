"""Command-line argument sets that several test modules share (imported by name: pytest puts
this folder on sys.path)."""

# a tiny network on 64x64 crops: a training step takes well under a second on one core
TINY_TRAIN = (
    "--process-long-side 64 --channels 8,8,16,16,16 --decoder-channels 16,8,8,8 "
    "--height 64 --width 64 --batch-size 2 --val-scenes 2 --log-every 1"
).split()

# the lens that test bags are recorded with (bag2dataset's real-defocus mode needs it)
BAG_LENS = "--focal-length-mm 35 --f-number 2 --focus-distance 1".split()
