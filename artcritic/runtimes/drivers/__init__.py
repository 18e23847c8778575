"""Runtime drivers: start, stop and health-check ComfyUI and the Critic (docker, process, external).

Import the contract from ``base`` and build drivers with ``factory.driver_for``.
"""
