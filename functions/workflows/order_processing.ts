/** The seed's order workflow as a declarative DAG: validate → charge → ship → notify. */
import { defineDag } from "jetflow/workflow";

export const order_processing = defineDag({
  name: "order_processing",
  version: "1.0.0",
  description: "Validate an order, charge the payment, ship it and notify the customer",
  timeout: "10m",
  activities: [
    { name: "validate_order", type: "validate_order", timeout: "10s", retryPolicy: { maxRetries: 0 } },
    {
      name: "charge_payment",
      type: "charge_payment",
      timeout: "30s",
      retryPolicy: { maxRetries: 3, initialInterval: "200ms", backoffFactor: 2, maxInterval: "5s" },
      dependencies: ["validate_order"],
    },
    { name: "ship_order", type: "ship_order", timeout: "30s", retryPolicy: { maxRetries: 3, initialInterval: "500ms" }, dependencies: ["charge_payment"] },
    { name: "send_notification", type: "send_notification", timeout: "10s", dependencies: ["ship_order"] },
  ],
});
