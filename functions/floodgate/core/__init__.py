"""The pure domain core: parsing, detection, slot planning and expiry decisions. No I/O, no boto3."""
