// Stripe's confirm step on the payment page (docs/portal.md, "Stripe"): Stripe.js (loaded
// from https://js.stripe.com/v3 by the page, as Stripe requires) mounts its Payment Element
// with the PaymentIntent's client_secret and confirms it. The secret comes from the form's
// data attribute, which this script removes at once; it goes into no URL and no log, and
// `redirect: "if_required"` keeps card payments on this page (a 3-D Secure redirect comes
// back to the payment page, which drops the secret Stripe appends to the URL).
"use strict";
(() => {
  const form = document.getElementById("stripe-confirm");
  if (!form) return;
  const status = document.getElementById("stripe-status");
  const button = document.getElementById("stripe-pay");
  let secret = form.dataset.clientSecret;
  form.removeAttribute("data-client-secret");
  if (typeof window.Stripe !== "function") {
    status.textContent = "Stripe.js did not load: reload the page to pay.";
    button.disabled = true;
    return;
  }
  const stripe = window.Stripe(form.dataset.publishableKey);
  const elements = stripe.elements({ clientSecret: secret });
  secret = null;
  elements.create("payment").mount("#payment-element");

  const refresh = () => {
    if (window.htmx) {
      window.htmx.ajax("GET", form.dataset.live, { target: "#payment-live", swap: "outerHTML" });
    }
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    status.textContent = "Confirming with Stripe…";
    try {
      const returnUrl = new URL(form.dataset.returnPath, window.location.origin).href;
      const { error } = await stripe.confirmPayment({
        elements,
        confirmParams: { return_url: returnUrl },
        redirect: "if_required",
      });
      status.textContent = error
        ? (error.message || "Stripe did not confirm the payment.") + " You can try again."
        : "Confirmed: waiting for Stripe's answer to reach billing…";
    } catch (failure) {
      status.textContent = "Stripe did not answer: try again.";
    } finally {
      button.disabled = false;
      refresh();
    }
  });
})();
