"""ROS 2 layer: the ``depth_defocus_node``, message conversions and the ``depth-defocus demo``.

* :mod:`.node`        the node (subscriptions, worker thread, parameters) and its ``main``
* :mod:`.params`      the parameter table, YAML and launch-argument checks (plain Python)
* :mod:`.conversions` sensor_msgs <-> numpy without cv_bridge; :mod:`.pointcloud` back-projection
* :mod:`.camera`      CameraInfo and frame_id bookkeeping; :mod:`.slot` the latest-frame-wins slot;
  :mod:`.stats` rates and stage times; :mod:`.diagnostics` the ``/diagnostics`` status;
  :mod:`.outputs` publishing one frame's outputs; :mod:`.signals` SIGINT/SIGTERM handling
* :mod:`.demo` + :mod:`.demo_nodes` the demo; :mod:`.rviz` the RViz config of the launch file
* :mod:`.harness`     an rclpy context with an executor thread etc., shared by tests and benchmarks

Imports rclpy and the message packages, and any group of the core (optics, the helpers, model,
estimate, evaluation for the demo's metrics); the core never imports from here, and the CLI imports
:mod:`.demo` only when the demo runs. :mod:`.pointcloud`, :mod:`.params`, :mod:`.slot`,
:mod:`.stats` and :mod:`.rviz` are plain numpy / Python, usable and testable without a ROS install.
"""
