"""Pilots: the expert driver (pure pursuit on the twin's ground truth), model pilots and the safety watchdog."""
