"""curate/stages"""
