// The sign-in page's only script: it submits the page's form, as the button would. Submitted
// while the page is still loading, the navigation replaces the page's history entry (HTML
// spec), so neither Back nor the history holds the link.
document.getElementById("login").submit();
