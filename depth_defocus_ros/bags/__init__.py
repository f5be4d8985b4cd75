"""Rosbags -> dataset shards (``depth-defocus bag2dataset``), without a ROS install.

* :mod:`.messages`  decode sensor_msgs Image / CompressedImage / CameraInfo payloads to arrays
* :mod:`.reader`    open rosbag2 (sqlite3, MCAP) and ROS 1 bags with ``rosbags``; pick topics
* :mod:`.pairing`   approximate-time RGB/depth pairing, subsampling, time-block or per-bag splits
* :mod:`.options`   the converter's options, errors and progress reporting
* :mod:`.scan`      stage 1: topics, headers, registration, fx, lens (one process per bag)
* :mod:`.plan`      stage 2 (pure): pairing, subsampling, splits, shards
* :mod:`.write`     stage 3: decode, resize, render, write shards atomically (parallel processes)
* :mod:`.convert`   the driver: workers, resume, manifest, report; :mod:`.args` its command line
* :mod:`.synth`     write small bags from synthetic scenes (tests, examples, measurements)

The dataset format is documented in ``DATASET.md``. Imports optics, the helpers (argtypes,
imagecodec, rosenv) and synth (render, scenes, shards), and the ``rosbags`` library; never rclpy
(a training machine converts bags without ROS); only the CLI and ``launch/record.launch.py`` use it.
"""
