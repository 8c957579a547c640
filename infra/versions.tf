# Terraform >= 1.11 for write-only arguments (aws_ssm_parameter.value_wo): the secrets go to SSM without
# ever entering the plan or the state. Ephemeral resources (random_password) need >= 1.10, cross-variable
# validation >= 1.9.
terraform {
  required_version = "~> 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.28 adds aws_lambda_permission.invoked_via_function_url (public Function URLs need it since
      # October 2025, see modules/webhook).
      version = "~> 6.28"
    }
    random = {
      source = "hashicorp/random"
      # 3.7.1 adds the ephemeral random_password used for the generated secrets.
      version = "~> 3.7, >= 3.7.1"
    }
  }
}
