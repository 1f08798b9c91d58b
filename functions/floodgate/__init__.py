"""Floodgate: deny concentrated flood sources in VPC Network ACLs before autoscaling pays for them."""

__version__ = "0.1.0"
