"""ROS 2 layer: the ``depth_defocus_node``, message conversions and the ``depth-defocus demo``.

Imports rclpy and the message packages; the core (``depth_defocus_ros.*`` outside this package)
never imports from here. :mod:`.pointcloud`, :mod:`.params`, :mod:`.slot` and :mod:`.stats` are
plain numpy / Python so that they can be used and tested without a ROS install.
"""
