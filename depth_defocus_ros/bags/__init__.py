"""Rosbags -> dataset shards (``depth-defocus bag2dataset``), without a ROS install.

* :mod:`.messages`  decode sensor_msgs Image / CompressedImage / CameraInfo payloads to arrays
* :mod:`.reader`    open rosbag2 (sqlite3, MCAP) and ROS 1 bags with ``rosbags``; pick topics
* :mod:`.pairing`   approximate-time RGB/depth pairing, subsampling, time-block or per-bag splits
* :mod:`.convert`   the converter: scan, plan, write shards in parallel processes, manifest, report
* :mod:`.synth`     write small bags from synthetic scenes (tests, examples, measurements)

The dataset format is documented in ``DATASET.md``.
"""
