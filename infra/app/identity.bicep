// The gateway's own identity: one user-assigned managed identity.
//
// User-assigned rather than system-assigned because
//   * it exists before the function app, so its role assignments (rbac.bicep) are granted in the
//     same deployment, before the app first starts, instead of after it;
//   * the function app's Flex deployment container, AzureWebJobsStorage and Application Insights
//     all need to name one identity by client id (`AzureWebJobsStorage__clientId`,
//     `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`, `AZURE_CLIENT_ID`);
//   * it survives deleting and recreating the app, keeping its grants.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
