"""Driving data: donkeycar tubs collected by the expert in the twin, their checker and statistics."""
