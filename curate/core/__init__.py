"""curate/core"""
