"""The fleet: what a car sees comes home, and the NUC shows every car.

Car side: a durable spool (`spool`), an MQTT sender that deletes a record only on the ingest's
acknowledgement (`sender`), the donkeycar part that writes heartbeats and events (`part`), frame
statistics and a drift score (`drift`), tubs as OCI data bundles (`tubbundle`, `uploader`). The message
schema both sides share is `protocol`. The contract between car and NUC is docs/fleet.md.
"""
