"""Reports: experiments, figures and the demo page."""
