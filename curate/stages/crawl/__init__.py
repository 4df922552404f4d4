"""curate/stages/crawl"""
