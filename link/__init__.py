"""The link layer shared by edge and cloud: wire format, framing, transports, channel models.

Torch-free by design (a test proves it): cameras install this with numpy, cryptography,
paho-mqtt and pyserial only.
"""
