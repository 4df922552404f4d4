"""curate/workflow"""
