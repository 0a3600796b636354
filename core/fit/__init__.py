"""Fitting: the rig → joint → vertex stage schedule, its loop and control."""
