"""The CDK app that deploys Floodgate: typed settings, one construct per concern, one stack."""
