"""curate/stages/filter"""
