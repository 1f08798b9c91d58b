"""Adapters to AWS services. Each takes its boto3 client as an optional parameter."""
