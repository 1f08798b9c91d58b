"""The Lambda entry points (`observability.DETECTOR_HANDLER`, `observability.EXPIRER_HANDLER`): thin layers of
powertools over the domain services."""
